import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runOk } from '../util/exec.js';
import { pidAlive } from '../util/lock.js';
import { imagesDir } from '../util/paths.js';
import type { ResolvedRecipe } from './recipe.js';

/**
 * The image cache: `imagesDir()/<key>/{rootfs/,image.json}`. Work in progress lives in dot-folders
 * (`.tmp-<what>-<pid>-<random>`) that are renamed into place when complete, so a `<key>/` folder is
 * always a finished image.
 */

export type ImageSource = 'recipe' | 'import';
/** A container image is a rootfs; a VM image (images/vm.ts) adds a kernel and a base disk. */
export type ImageKind = 'container' | 'vm';

/** image.json */
export interface ImageMeta {
  name: string;
  key: string;
  source: ImageSource;
  /** What the image was built from; null for imports. */
  recipe: ResolvedRecipe | null;
  packages: string[];
  size: number;
  created: string;
}

export interface ImageInfo {
  key: string;
  name: string;
  kind: ImageKind;
  rootfs: string;
  dir: string;
  packages: string[];
  sizeBytes: number;
  created: string;
  source: ImageSource;
  recipe: ResolvedRecipe | null;
}

const KEY = /^[0-9a-f]{16}$/;

export function imageDir(key: string): string {
  return join(imagesDir(), key);
}

export async function readImage(key: string): Promise<ImageInfo | undefined> {
  if (!KEY.test(key)) return undefined;
  const dir = imageDir(key);
  let meta: ImageMeta;
  try {
    meta = JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as ImageMeta;
  } catch {
    return undefined;
  }
  if (meta.key !== key || typeof meta.name !== 'string') return undefined;
  return {
    key,
    name: meta.name,
    kind: 'container',
    rootfs: join(dir, 'rootfs'),
    dir,
    packages: meta.packages ?? [],
    sizeBytes: meta.size ?? 0,
    created: meta.created,
    source: meta.source === 'import' ? 'import' : 'recipe',
    recipe: meta.recipe ?? null,
  };
}

export async function listCached(): Promise<ImageInfo[]> {
  const entries = await readdir(imagesDir()).catch(() => [] as string[]);
  const images = await Promise.all(entries.filter((e) => KEY.test(e)).map(readImage));
  return images
    .filter((i): i is ImageInfo => i !== undefined)
    .sort((a, b) => a.name.localeCompare(b.name) || b.created.localeCompare(a.created));
}

/** A fresh work folder in the cache (same file system as the images, so the final rename is atomic). */
export async function makeTemp(what: string): Promise<string> {
  await mkdir(imagesDir(), { recursive: true, mode: 0o755 });
  const dir = join(imagesDir(), `.tmp-${what}-${process.pid}-${randomBytes(3).toString('hex')}`);
  await mkdir(dir, { mode: 0o755 });
  return dir;
}

/** Work folders whose process is gone (killed mid-build); never another live build's. */
export async function staleTemps(): Promise<string[]> {
  const entries = await readdir(imagesDir()).catch(() => [] as string[]);
  return entries
    .filter((e) => {
      const pid = /^\.tmp-.+-(\d+)-[0-9a-f]{6}$/.exec(e)?.[1];
      return pid !== undefined && !pidAlive(Number(pid));
    })
    .map((e) => join(imagesDir(), e));
}

/** Writes image.json into a finished work folder and renames it into place, replacing an older build of that key. */
export async function install(work: string, meta: ImageMeta): Promise<ImageInfo> {
  await writeFile(join(work, 'image.json'), `${JSON.stringify(meta, null, 2)}\n`);
  const dest = imageDir(meta.key);
  const old = join(imagesDir(), `.tmp-old-${process.pid}-${randomBytes(3).toString('hex')}`);
  const replacing = await rename(dest, old).then(() => true, () => false);
  try {
    await rename(work, dest);
  } finally {
    if (replacing) await removeTree(old);
  }
  return (await readImage(meta.key))!;
}

/**
 * rm -rf that never crosses into a mount: a build killed at the wrong moment can leave the host's
 * /proc, /sys or /dev bind-mounted inside its work folder, and deleting through those would be a disaster.
 */
export async function removeTree(dir: string): Promise<void> {
  for (const mount of await mountsUnder(dir)) await runOk('umount', ['--lazy', mount]);
  await rm(dir, { recursive: true, force: true });
}

async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

export async function diskUsage(dir: string): Promise<number> {
  const { stdout } = await runOk('du', ['--summarize', '--one-file-system', '--block-size=1', dir]);
  return Number.parseInt(stdout, 10) || 0;
}

