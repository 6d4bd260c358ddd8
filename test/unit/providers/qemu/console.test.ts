import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vmPaths, type VmPaths } from '../../../../src/providers/qemu/layout.js';
import { consoleOffset, consoleTail } from '../../../../src/providers/qemu/machine.js';

// A failed boot's error quotes the console: only this boot's lines, without terminal escapes.
let dir: string;
let paths: VmPaths;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-console-'));
  paths = vmPaths({ id: 'console-test', stateDir: dir });
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('consoleTail', () => {
  it('is empty before the first boot', async () => {
    expect(await consoleOffset(paths)).toBe(0);
    expect(await consoleTail(paths, 0)).toEqual([]);
  });

  it('quotes the last lines since the boot started, without colour codes or blank lines', async () => {
    const earlier = '[    1.0] an earlier boot\n';
    await mkdir(paths.dir, { recursive: true });
    await writeFile(paths.consoleLog, earlier);
    const from = await consoleOffset(paths);
    expect(from).toBe(earlier.length);
    const boot = ['[    0.5] Linux version 6.1.0', '', '\x1b[0;32m  OK  \x1b[0m] Reached target basic.target', '[    9.9] Kernel panic - not syncing: VFS'];
    await writeFile(paths.consoleLog, `${earlier}${boot.join('\r\n')}\r\n`);
    expect(await consoleTail(paths, from)).toEqual(['[    0.5] Linux version 6.1.0', '  OK  ] Reached target basic.target', '[    9.9] Kernel panic - not syncing: VFS']);
    expect(await consoleTail(paths, from, 1)).toEqual(['[    9.9] Kernel panic - not syncing: VFS']);
  });
});
