import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';
import type { InitAnswers, Template } from '../core/init.js';
import { UsageError } from '../util/errors.js';

/** true, or why `name` can't be an env name (the Envfile schema's own check). */
async function nameChecker(): Promise<(name: string) => string | true> {
  const { envfileSchema } = await import('../envfile/schema.js');
  const nameSchema = envfileSchema.shape.name.unwrap();
  return (name) => {
    const r = nameSchema.safeParse(name);
    return r.success ? true : r.error.issues[0]!.message;
  };
}

function parsePorts(text: string): number[] | string {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  const ports = parts.map(Number);
  const bad = parts.find((_, i) => !Number.isInteger(ports[i]) || ports[i]! < 1 || ports[i]! > 65535);
  if (bad !== undefined) return `${JSON.stringify(bad)} is not a port — use numbers from 1 to 65535, separated by commas`;
  return ports;
}

export default class Init extends EnvCommand {
  static override summary = 'Write an Envfile for this folder from a template.';
  static override description =
    'On a terminal it asks for the template, name, ports and shared folder. With --yes or without a terminal it uses flags and defaults. It never replaces an existing Envfile without --force.';
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init --yes --template python --port 8000 --port 5432'];
  static override flags = {
    template: Flags.string({ char: 't', description: 'Template to start from (see the list in interactive mode).' }),
    name: Flags.string({ description: "The env's name (default: the folder's name)." }),
    port: Flags.integer({ char: 'p', description: 'Port to forward (repeatable); replaces the template ports.', multiple: true }),
    provider: Flags.string({ description: 'container or vm.', options: ['container', 'vm'] }),
    yes: Flags.boolean({ char: 'y', description: 'Do not ask; take flags and defaults.' }),
    force: Flags.boolean({ char: 'f', description: 'Replace an existing Envfile.' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Init);
    const { defaultAnswers, listTemplates, renderEnvfile, writeEnvfile } = await import('../core/init.js');
    const checkName = await nameChecker();
    const templates = await listTemplates();
    const chosen = flags.template ?? 'debian';
    const template = templates.find((t) => t.name === chosen);
    if (!template) {
      throw new UsageError('TEMPLATE_UNKNOWN', `no template named ${chosen}`, {
        hint: `use one of: ${templates.map((t) => t.name).join(', ')}`,
      });
    }
    const folder = process.cwd();
    let answers: InitAnswers = defaultAnswers(folder, template);
    if (flags.name !== undefined) {
      const ok = checkName(flags.name);
      if (ok !== true) throw new UsageError('BAD_NAME', `--name ${ok}`);
      answers.name = flags.name;
    }
    if (flags.port) {
      const bad = flags.port.find((p) => p < 1 || p > 65535);
      if (bad !== undefined) throw new UsageError('BAD_PORT', `--port ${bad} is not a port — use a number from 1 to 65535`);
      answers.ports = flags.port;
    }
    if (flags.provider) answers.provider = flags.provider as InitAnswers['provider'];
    const interactive = !flags.yes && !flags.json && process.stdin.isTTY && process.stdout.isTTY;
    if (interactive) answers = await ask(answers, templates, checkName, { template: flags.template, ports: flags.port });
    const path = await writeEnvfile(folder, await renderEnvfile(answers), flags.force);
    this.result({ envfile: path, ...answers }, () => `Wrote ${path} (template ${answers.template}). Next: env up`);
  }
}

async function ask(
  start: InitAnswers,
  templates: Template[],
  checkName: (name: string) => string | true,
  given: { template?: string; ports?: number[] },
): Promise<InitAnswers> {
  const { input, select } = await import('@inquirer/prompts');
  const template = given.template ?? (await select({
    message: 'Template',
    choices: templates.map((t) => ({ name: `${t.name} — ${t.description}`, value: t.name })),
    default: start.template,
  }));
  const defaults = templates.find((t) => t.name === template)!;
  const name = await input({ message: 'Name', default: start.name, validate: checkName });
  const portsText = await input({
    message: 'Ports to forward (comma-separated, empty for none)',
    default: (given.ports ?? defaults.ports).join(', '),
    validate: (text) => (typeof parsePorts(text) === 'string' ? (parsePorts(text) as string) : true),
  });
  const guest = await input({
    message: 'Guest path of this folder',
    default: start.guest,
    validate: (p: string) => (p.startsWith('/') && !/[\n\r\0]/.test(p) ? true : 'use an absolute path like /home/dev/project'),
  });
  return { ...start, template, name, ports: parsePorts(portsText) as number[], guest };
}
