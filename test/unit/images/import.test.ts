import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkListing, importImage, tarCompression } from '../../../src/images/import.js';
import { runOk } from '../../../src/util/exec.js';
import { imagesDir } from '../../../src/util/paths.js';
import { silentProgress } from '../../../src/util/progress.js';

describe('checkListing', () => {
  it('finds members that escape and whether it is a rootfs', () => {
    expect(checkListing('./\n./etc/\n./etc/os-release\n./usr/\n')).toEqual({ escapes: [], osRelease: true });
    expect(checkListing('etc/os-release\n')).toEqual({ escapes: [], osRelease: true });
    expect(checkListing('etc/\netc/passwd\n')).toEqual({ escapes: [], osRelease: false });
    expect(checkListing('etc/os-release\n../evil\na/../../b\n/abs/file\na..b/c\n')).toEqual({
      escapes: ['../evil', 'a/../../b', '/abs/file'],
      osRelease: true,
    });
  });
});

describe('tarCompression', () => {
  it('picks the flag from the file name', () => {
    expect(tarCompression('/x/rootfs.tar')).toEqual([]);
    expect(tarCompression('rootfs.tar.zst')).toEqual(['--zstd']);
    expect(tarCompression('rootfs.tgz')).toEqual(['--gzip']);
    expect(tarCompression('rootfs.tar.xz')).toEqual(['--xz']);
    expect(tarCompression('rootfs.zip')).toBeUndefined();
  });
});

describe('importImage rejects what is not a safe rootfs', () => {
  let dir: string;
  const saved = process.env.XDG_CACHE_HOME;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envbox-import-'));
    process.env.XDG_CACHE_HOME = join(dir, 'cache');
    await mkdir(join(dir, 'tree/sub'), { recursive: true });
    await writeFile(join(dir, 'tree/sub/file'), 'x\n');
  });
  afterEach(async () => {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    await rm(dir, { recursive: true, force: true });
  });

  async function expectNothingCached(): Promise<void> {
    expect(await readdir(imagesDir()).catch(() => [])).toEqual([]);
  }

  it('a tarball with ../ members', async () => {
    await mkdir(join(dir, 'tree/etc'));
    await writeFile(join(dir, 'tree/etc/os-release'), 'ID=debian\n');
    // --absolute-names keeps the ../ that GNU tar would otherwise strip when creating.
    const tarball = join(dir, 'evil.tar.gz');
    await runOk('tar', ['--absolute-names', '-czf', tarball, '-C', join(dir, 'tree/sub'), '../etc/os-release', '../sub/../sub/file']);
    await expect(importImage(tarball, 'evil', silentProgress)).rejects.toMatchObject({
      code: 'IMAGE_IMPORT_INVALID',
      message: `cannot import ${tarball}: it has members outside its root folder: ../etc/os-release, ../sub/../sub/file`,
    });
    await expectNothingCached();
  });

  it('a tarball without etc/os-release', async () => {
    const tarball = join(dir, 'plain.tar.zst');
    await runOk('tar', ['--zstd', '-cf', tarball, '-C', join(dir, 'tree'), '.']);
    await expect(importImage(tarball, 'plain', silentProgress)).rejects.toMatchObject({
      code: 'IMAGE_IMPORT_INVALID',
      message: `cannot import ${tarball}: it has no etc/os-release, so it is not a Linux root filesystem`,
    });
    await expectNothingCached();
  });

  it('a file that is not a tarball, a bad name, an unknown extension, a missing file', async () => {
    const fake = join(dir, 'fake.tar');
    await writeFile(fake, 'not a tarball at all\n'.repeat(100));
    await expect(importImage(fake, 'fake', silentProgress)).rejects.toMatchObject({ code: 'IMAGE_IMPORT_INVALID' });
    await expect(importImage(fake, 'debian/mine', silentProgress)).rejects.toMatchObject({ code: 'IMAGE_NAME_INVALID', exit: 2 });
    await expect(importImage(join(dir, 'x.zip'), 'x', silentProgress)).rejects.toMatchObject({ code: 'IMAGE_IMPORT_FORMAT' });
    await expect(importImage(join(dir, 'missing.tar'), 'x', silentProgress)).rejects.toMatchObject({ code: 'IMAGE_IMPORT_MISSING' });
    await expectNothingCached();
  });
});
