import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

/**
 * Points an XDG folder variable (XDG_CACHE_HOME, XDG_STATE_HOME, …) at a new temp folder for each test
 * of the enclosing describe, then restores it and removes the folder. `dir()` is the current folder.
 */
export function tempXdgDir(variable: `XDG_${string}_HOME`, prefix = 'envbox-xdg-'): { dir: () => string } {
  let dir = '';
  const saved = process.env[variable];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
    process.env[variable] = dir;
  });
  afterEach(async () => {
    if (saved === undefined) delete process.env[variable];
    else process.env[variable] = saved;
    await rm(dir, { recursive: true, force: true });
  });
  return { dir: () => dir };
}
