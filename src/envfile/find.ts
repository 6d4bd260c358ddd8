import { existsSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { UsageError } from '../util/errors.js';

/** Finding the Envfile needs no YAML: kept apart from load.ts so a cached config (cache.ts) never loads the parser. */

export const ENVFILE_NAMES = ['Envfile', 'Envfile.yaml', 'Envfile.yml'];
/** Far above any real Envfile; stops a huge or generated file before YAML parsing costs anything. */
export const MAX_ENVFILE_BYTES = 256 * 1024;

/** Finds the Envfile: --envfile / ENVBOX_ENVFILE, else the current folder or the nearest parent that has one. */
export function findEnvfile(explicit: string | undefined, cwd = process.cwd()): string {
  if (explicit) {
    const path = resolve(cwd, explicit);
    if (!existsSync(path)) {
      throw new UsageError('ENVFILE_NOT_FOUND', `${explicit} does not exist`, {
        hint: 'check the path given with --envfile or ENVBOX_ENVFILE',
      });
    }
    if (statSync(path).isDirectory()) {
      for (const name of ENVFILE_NAMES) if (existsSync(join(path, name))) return join(path, name);
      throw new UsageError('ENVFILE_NOT_FOUND', `${explicit} is a folder without an Envfile`, {
        hint: 'run env init there, or point --envfile at the file',
      });
    }
    return path;
  }
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    for (const name of ENVFILE_NAMES) {
      const path = join(dir, name);
      if (existsSync(path)) return path;
    }
    if (dirname(dir) === dir) break;
  }
  throw new UsageError('ENVFILE_NOT_FOUND', `no Envfile in ${cwd} or any folder above it`, {
    hint: 'run env init to create one, or pass --envfile PATH',
  });
}

export function displayName(path: string, cwd = process.cwd()): string {
  const rel = relative(cwd, path);
  return rel && !rel.startsWith('..') ? rel : path;
}
