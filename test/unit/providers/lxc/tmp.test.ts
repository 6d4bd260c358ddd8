import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { emptyGuestTmp } from '../../../../src/providers/lxc/rootfs.js';

describe("emptying the guest's /tmp before it boots", () => {
  let scratch: string;
  let rootfs: string;
  let outside: string;

  beforeEach(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-tmp-'));
    rootfs = join(scratch, 'rootfs');
    outside = join(scratch, 'outside');
    await mkdir(rootfs);
    await mkdir(outside);
    await writeFile(join(outside, 'keep'), 'host file');
  });

  afterEach(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('removes files, folders and links in it, without following the links', async () => {
    await mkdir(join(rootfs, 'tmp/deep/er'), { recursive: true });
    await writeFile(join(rootfs, 'tmp/deep/er/f'), 'x');
    await writeFile(join(rootfs, 'tmp/.hidden'), 'x');
    await symlink(outside, join(rootfs, 'tmp/link'));
    await emptyGuestTmp(rootfs);
    expect(await readdir(join(rootfs, 'tmp'))).toEqual([]);
    expect(existsSync(join(outside, 'keep'))).toBe(true);
  });

  it('leaves a /tmp that is a symlink alone, and does nothing without a /tmp', async () => {
    await symlink(outside, join(rootfs, 'tmp'));
    await emptyGuestTmp(rootfs);
    expect(await readdir(outside)).toEqual(['keep']);
    await rm(join(rootfs, 'tmp'));
    await expect(emptyGuestTmp(rootfs)).resolves.toBeUndefined();
  });
});
