import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureImage, findImage, listImages, pruneImages, removeImage, resolveImage } from '../../../src/images/index.js';
import { lockFile, withImageLock } from '../../../src/images/lock.js';
import type { ImageMeta } from '../../../src/images/store.js';
import { imagesDir } from '../../../src/util/paths.js';
import { tempXdgDir } from '../../helpers/xdg.js';
import { silentProgress, type Progress } from '../../../src/util/progress.js';

/** A pid no process has: above the kernel's pid_max. */
const DEAD_PID = 99_999_999;

async function fakeImage(key: string, meta: Partial<ImageMeta> = {}): Promise<void> {
  const dir = join(imagesDir(), key);
  await mkdir(join(dir, 'rootfs/etc'), { recursive: true });
  const full: ImageMeta = { name: 'debian/bookworm', key, source: 'recipe', recipe: null, packages: [], size: 4096, created: '2024-01-01T00:00:00.000Z', ...meta };
  await writeFile(join(dir, 'image.json'), JSON.stringify(full));
}

/** A VM image as images/vm.ts writes it: image.json under imagesDir()/vm/<key>/. */
async function fakeVmImage(key: string, name = 'debian/bookworm'): Promise<void> {
  const dir = join(imagesDir(), 'vm', key);
  await mkdir(join(dir, 'rootfs'), { recursive: true });
  const recipe = { name, suite: 'bookworm', packages: ['linux-image-amd64'] };
  await writeFile(join(dir, 'image.json'), JSON.stringify({ name, key, recipe, diskBytes: 2 ** 30, size: 8192, created: '2024-01-02T00:00:00.000Z' }));
}

function recording(): Progress & { lines: string[] } {
  const lines: string[] = [];
  return { lines, update: (d) => lines.push(`update ${d}`), log: (l) => lines.push(`log ${l}`) };
}

describe('the image cache', () => {
  tempXdgDir('XDG_CACHE_HOME', 'envbox-cache-');

  it('returns a cached image without building or reporting anything', async () => {
    const { key } = await resolveImage('debian/bookworm');
    await fakeImage(key);
    const progress = recording();
    const image = await ensureImage('debian/bookworm', progress);
    expect(image).toMatchObject({ key, name: 'debian/bookworm', rootfs: join(imagesDir(), key, 'rootfs'), sizeBytes: 4096, source: 'recipe' });
    expect(progress.lines).toEqual([]);
    expect(await findImage({ from: 'debian/bookworm', packages: ['zsh'] })).toBeUndefined();
  });

  it('lists, removes by name or key prefix, and ignores work in progress', async () => {
    await fakeImage('aaaaaaaaaaaaaaaa', { name: 'debian/bookworm' });
    await fakeImage('bbbbbbbbbbbbbbbb', { name: 'mine', source: 'import' });
    await mkdir(join(imagesDir(), '.tmp-cccccccccccccccc-1-abcdef/rootfs'), { recursive: true });
    expect((await listImages()).map((i) => i.name)).toEqual(['debian/bookworm', 'mine']);

    await expect(removeImage('debian/bookwrm')).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: 'no cached image "debian/bookwrm" — did you mean debian/bookworm?',
    });
    expect((await removeImage('bbbbbb')).map((i) => i.name)).toEqual(['mine']);
    expect((await removeImage('debian/bookworm')).map((i) => i.key)).toEqual(['aaaaaaaaaaaaaaaa']);
    expect(await listImages()).toEqual([]);
  });

  it('lists VM images beside container images, and removes both builds of a name', async () => {
    await fakeImage('aaaaaaaaaaaaaaaa');
    await fakeVmImage('dddddddddddddddd');
    expect((await listImages()).map((i) => [i.name, i.kind, i.key, i.sizeBytes])).toEqual([
      ['debian/bookworm', 'container', 'aaaaaaaaaaaaaaaa', 4096],
      ['debian/bookworm', 'vm', 'dddddddddddddddd', 8192],
    ]);
    expect((await removeImage('debian/bookworm')).map((i) => i.kind)).toEqual(['container', 'vm']);
    expect(await readdir(join(imagesDir(), 'vm'))).toEqual([]);
  });

  it('refuses to remove an image an env is built on, naming the env, and removes nothing', async () => {
    await fakeImage('aaaaaaaaaaaaaaaa');
    await fakeVmImage('dddddddddddddddd');
    const users = new Map([['dddddddddddddddd', ['web']]]);
    await expect(removeImage('debian/bookworm', users)).rejects.toMatchObject({
      code: 'IMAGE_IN_USE',
      message: 'debian/bookworm is in use by env web: removing it would break that env',
      hint: expect.stringContaining('env destroy'),
    });
    await expect(removeImage('dddddd', users)).rejects.toMatchObject({ code: 'IMAGE_IN_USE' });
    expect((await listImages()).map((i) => i.key)).toEqual(['aaaaaaaaaaaaaaaa', 'dddddddddddddddd']);
    expect((await removeImage('aaaaaa', users)).map((i) => i.key)).toEqual(['aaaaaaaaaaaaaaaa']);
  });

  it('prunes VM images no env keeps', async () => {
    await fakeVmImage('dddddddddddddddd');
    await fakeVmImage('eeeeeeeeeeeeeeee', 'debian/other');
    expect((await pruneImages(new Set(['eeeeeeeeeeeeeeee']))).map((i) => [i.kind, i.key])).toEqual([['vm', 'dddddddddddddddd']]);
    expect(await readdir(join(imagesDir(), 'vm'))).toEqual(['eeeeeeeeeeeeeeee']);
  });

  it('prunes what no env keeps, except imports, running builds and live work folders', async () => {
    await fakeImage('1111111111111111');
    await fakeImage('2222222222222222');
    await fakeImage('3333333333333333', { name: 'mine', source: 'import' });
    await fakeImage('4444444444444444', { name: 'building' });
    await writeFile(lockFile('4444444444444444'), `${process.pid}\n`);
    await writeFile(lockFile('5555555555555555'), `${DEAD_PID}\n`);
    await writeFile(join(imagesDir(), '.5555555555555555.failed.log'), 'E: no\n');
    await mkdir(join(imagesDir(), `.tmp-6666666666666666-${DEAD_PID}-abcdef/rootfs`), { recursive: true });
    await mkdir(join(imagesDir(), `.tmp-7777777777777777-${process.pid}-abcdef`), { recursive: true });

    const removed = await pruneImages(new Set(['1111111111111111']));
    expect(removed.map((i) => i.key)).toEqual(['2222222222222222']);
    expect((await readdir(imagesDir())).sort()).toEqual([
      '.4444444444444444.lock',
      `.tmp-7777777777777777-${process.pid}-abcdef`,
      '1111111111111111',
      '3333333333333333',
      '4444444444444444',
    ]);
    expect((await pruneImages(new Set(), { imports: true })).map((i) => i.name)).toEqual(['debian/bookworm', 'mine']);
  });
});

describe('withImageLock', () => {
  tempXdgDir('XDG_CACHE_HOME', 'envbox-lock-');

  it('makes a second caller for the same key wait for the first', async () => {
    const order: string[] = [];
    const progress = recording();
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const first = withImageLock('k', 'building x', silentProgress, undefined, async () => {
      order.push('first start');
      holding();
      await new Promise((r) => setTimeout(r, 300));
      order.push('first end');
    });
    // The second asks once the first holds the lock (two asking at once: either may win).
    await held;
    const second = withImageLock('k', 'building x', progress, undefined, async () => {
      order.push('second');
    });
    await Promise.all([first, second]);
    expect(order).toEqual(['first start', 'first end', 'second']);
    expect(progress.lines[0]).toBe(`update waiting for another envbox (pid ${process.pid}) to finish building x`);
    expect(await readdir(imagesDir())).toEqual([]);
  });

  it('takes over a lock whose process died', async () => {
    await mkdir(imagesDir(), { recursive: true });
    await writeFile(lockFile('k'), `${DEAD_PID}\n`);
    const progress = recording();
    expect(await withImageLock('k', 'building x', progress, undefined, async () => 'ran')).toBe('ran');
    expect(progress.lines).toEqual([]);
  });

  it('stops waiting when aborted', async () => {
    await mkdir(imagesDir(), { recursive: true });
    await writeFile(lockFile('k'), `${process.pid}\n`);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 100);
    await expect(withImageLock('k', 'building x', silentProgress, abort.signal, async () => 'ran')).rejects.toMatchObject({
      code: 'IMAGE_ABORTED',
      message: 'building x was interrupted',
    });
  });
});
