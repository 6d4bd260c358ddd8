import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { nameFromFolder } from '../envfile/defaults.js';
import { UsageError } from '../util/errors.js';
import { packageRoot } from '../util/package.js';

export interface Template {
  name: string;
  description: string;
  ports: number[];
}

export interface InitAnswers {
  template: string;
  name: string;
  provider: 'container' | 'vm';
  ports: number[];
  /** Guest path of the shared project folder. */
  guest: string;
}

function envTemplatesDir(): string {
  return join(packageRoot(), 'templates', 'envs');
}

export async function listTemplates(): Promise<Template[]> {
  const index = parse(await readFile(join(envTemplatesDir(), 'index.yaml'), 'utf8')) as Record<string, Omit<Template, 'name'>>;
  return Object.entries(index).map(([name, t]) => ({ name, description: t.description, ports: t.ports ?? [] }));
}

export function defaultAnswers(folder: string, template: Template): InitAnswers {
  return { template: template.name, name: nameFromFolder(folder), provider: 'container', ports: template.ports, guest: '/home/dev/project' };
}

/** Renders a preset. Every value was validated by the caller (name, ports, guest path), so plain substitution is safe. */
export async function renderEnvfile(answers: InitAnswers): Promise<string> {
  const text = await readFile(join(envTemplatesDir(), `${answers.template}.yaml`), 'utf8');
  const values: Record<string, string> = {
    name: answers.name,
    provider: answers.provider,
    guest: answers.guest,
    ports: `[${answers.ports.join(', ')}]`,
    schema: join(packageRoot(), 'schema', 'envfile.schema.json'),
  };
  return text.replace(/\{\{(\w+)\}\}/g, (_, key: string) => values[key] ?? '');
}

/** Writes ./Envfile; never replaces an existing one without `force`. */
export async function writeEnvfile(folder: string, text: string, force: boolean): Promise<string> {
  const path = join(folder, 'Envfile');
  if (existsSync(path) && !force) {
    throw new UsageError('ENVFILE_EXISTS', `${path} already exists`, { hint: 'use env init --force to replace it' });
  }
  await writeFile(path, text, { mode: 0o644 });
  return path;
}
