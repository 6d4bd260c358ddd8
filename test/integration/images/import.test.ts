import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureImage, importImage, listImages, removeImage, resolveImage } from '../../../src/images/index.js';
import { runOk } from '../../../src/util/exec.js';
import { imagesDir } from '../../../src/util/paths.js';
import { silentProgress, type Progress } from '../../../src/util/progress.js';

/** A tiny fake root filesystem, with what import must keep (owners, setuid) and what it must strip (host keys). */
async function fakeRootfs(root: string, release: string): Promise<void> {
  for (const d of ['etc/ssh', 'etc/systemd/system', 'usr/bin', 'usr/lib', 'home/dev']) await mkdir(join(root, d), { recursive: true });
  await writeFile(join(root, 'usr/lib/os-release'), `PRETTY_NAME="${release}"\nID=debian\n`);
  await runOk('ln', ['-s', '../usr/lib/os-release', join(root, 'etc/os-release')]);
  await writeFile(join(root, 'etc/ssh/ssh_host_ed25519_key'), 'secret\n');
  await writeFile(join(root, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
  await writeFile(join(root, 'usr/bin/sudo'), '#!/bin/sh\n');
  await chmod(join(root, 'usr/bin/sudo'), 0o4755);
  await writeFile(join(root, 'home/dev/.profile'), 'export EDITOR=vi\n');
  await chown(join(root, 'home/dev'), 1000, 1000);
  await chown(join(root, 'home/dev/.profile'), 1000, 1000);
}

describe('importing a rootfs tarball', () => {
  let dir: string;
  const saved = process.env.XDG_CACHE_HOME;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envbox-import-'));
    process.env.XDG_CACHE_HOME = join(dir, 'cache');
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    await rm(dir, { recursive: true, force: true });
  });

  it('caches it under its name, keeps owners and modes, and prepares it like a built image', async () => {
    await fakeRootfs(join(dir, 'v1'), 'Tiny 1');
    const tarball = join(dir, 'tiny.tar.zst');
    await runOk('tar', ['--zstd', '-cf', tarball, '-C', join(dir, 'v1'), '.']);
    const logs: string[] = [];
    const progress: Progress = { update() {}, log: (l) => logs.push(l) };

    const image = await importImage(tarball, 'tiny', progress);

    expect(image).toMatchObject({ name: 'tiny', source: 'import', packages: [], dir: join(imagesDir(), image.key) });
    expect(logs.at(-1)).toMatch(/^imported image tiny \(\d+(\.\d)?KiB\) from tiny\.tar\.zst$/);
    const root = image.rootfs;
    expect(await readFile(join(root, 'etc/os-release'), 'utf8')).toContain('Tiny 1');
    expect((await stat(join(root, 'usr/bin/sudo'))).mode & 0o7777).toBe(0o4755);
    expect((await stat(join(root, 'home/dev/.profile'))).uid).toBe(1000);
    expect(await readdir(join(root, 'etc/ssh'))).toEqual([]);
    expect(await readFile(join(root, 'etc/machine-id'), 'utf8')).toBe('');
    expect(await readlink(join(root, 'etc/systemd/system/sys-kernel-debug.mount'))).toBe('/dev/null');
  });

  it('is referable by name like a recipe, and ensureImage never rebuilds it', async () => {
    const [image] = await listImages();
    expect(await resolveImage('tiny')).toMatchObject({ name: 'tiny', key: image!.key, source: 'import' });
    const updates: string[] = [];
    expect(await ensureImage('tiny', { update: (d) => updates.push(d), log() {} })).toEqual(image);
    expect(updates).toEqual([]);
  });

  it('replaces the image when the name is imported again, and removes it by name', async () => {
    await fakeRootfs(join(dir, 'v2'), 'Tiny 2');
    const tarball = join(dir, 'tiny2.tar.gz');
    await runOk('tar', ['-czf', tarball, '-C', join(dir, 'v2'), '.']);
    const before = (await listImages())[0]!;
    const after = await importImage(tarball, 'tiny', silentProgress);
    expect(after.key).not.toBe(before.key);
    expect((await listImages()).map((i) => i.key)).toEqual([after.key]);
    await expect(lstat(before.dir)).rejects.toThrow();
    expect(await readFile(join(after.rootfs, 'etc/os-release'), 'utf8')).toContain('Tiny 2');

    expect((await removeImage('tiny')).map((i) => i.key)).toEqual([after.key]);
    expect(await readdir(imagesDir())).toEqual([]);
  });
});
