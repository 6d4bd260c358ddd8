import { createHash } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { envsDir } from '../util/paths.js';

/**
 * Per-env state lives under the XDG state dir, never in the project: <state>/envs/<name>-<hash>/.
 * The id mixes the name with the Envfile's real path, so two projects both called `app` don't collide.
 */
export function envId(name: string, envfile: string): string {
  const real = existsSync(envfile) ? realpathSync(envfile) : envfile;
  return `${name}-${createHash('sha256').update(real).digest('hex').slice(0, 8)}`;
}

export function envDir(id: string): string {
  return join(envsDir(), id);
}

/** What envbox remembers about an env (env.json in its state folder). */
export interface EnvRecord {
  id: string;
  name: string;
  envfile: string;
  projectDir: string;
  provider: string;
  created: string;
  /** Provider's record of the machine (address, idmap, …) once created. */
  machine?: Record<string, unknown> & { address: string };
  image?: { key: string; name: string; rootfs: string };
  /** The guest user as created. */
  user?: { name: string; uid: number; gid: number; home: string };
  [key: string]: unknown;
}

export async function ensureEnvDir(id: string): Promise<string> {
  const dir = envDir(id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export async function readRecord(id: string): Promise<EnvRecord | undefined> {
  try {
    return JSON.parse(await readFile(join(envDir(id), 'env.json'), 'utf8')) as EnvRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Written atomically (temp + rename) so a crash never leaves half a record. */
export async function writeJsonAtomic(path: string, value: unknown, mode = 0o600): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode });
  await rename(tmp, path);
}

export async function writeRecord(record: EnvRecord): Promise<void> {
  await writeJsonAtomic(join(envDir(record.id), 'env.json'), record);
}

export async function removeEnvDir(id: string): Promise<void> {
  await rm(envDir(id), { recursive: true, force: true });
}

export interface ListedEnv {
  record: EnvRecord;
  /** The Envfile it came from is gone: the env can be pruned. */
  stale: boolean;
}

/** Every env known on this host (like `vagrant global-status`). */
export async function listEnvs(): Promise<ListedEnv[]> {
  let names: string[];
  try {
    names = await readdir(envsDir());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: ListedEnv[] = [];
  for (const name of names.sort()) {
    const record = await readRecord(name).catch(() => undefined);
    if (record) out.push({ record, stale: !existsSync(record.envfile) });
  }
  return out;
}
