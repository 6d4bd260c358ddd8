import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, readdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError } from '../util/errors.js';
import { runOk } from '../util/exec.js';
import { imagesDir } from '../util/paths.js';
import type { Progress } from '../util/progress.js';
import { formatSize } from '../util/size.js';
import { buildLineReporter, failureHint, failureLines } from './build-progress.js';
import { failedLogFile } from './build.js';
import { customizeRootfs } from './customize.js';
import { aborted, withImageLock } from './lock.js';
import { eatmydataUsable, mmdebstrapArgs, runMmdebstrap } from './mmdebstrap.js';
import { normalizePackages, type ResolvedRecipe } from './recipe.js';
import { imageKey } from './resolve.js';
import { diskUsage, makeTemp, removeTree, type ImageInfo } from './store.js';
import { customizeHookScript, setupHookScript, VM_PACKAGES } from './vm-guest.js';

/**
 * VM images: the same recipe as the container image plus a kernel, a small initramfs and udev, built
 * with mmdebstrap and cached by content hash under `imagesDir()/vm/<key>/`:
 *
 *   rootfs/      the tree (kept: each env's first-boot files are computed against it, see qemu/seed.ts)
 *   vmlinuz, initrd.img   for direct kernel boot (no bootloader, no firmware wait)
 *   disk.raw     the rootfs as one ext4 filesystem (mkfs.ext4 -d, no loop mount): every env's disk is a
 *                qcow2 overlay on it
 *
 * A folder apart from the container images, so `env image prune` (which keeps only the container images
 * envs record) never removes a disk that VM overlays are backed by.
 */

/** Bump whenever vm-guest.ts or the build steps here change what a VM image contains. */
export const VM_IMAGE_VERSION = 2;

export interface VmImage {
  key: string;
  name: string;
  dir: string;
  rootfs: string;
  kernel: string;
  initrd: string;
  disk: string;
  /** The base disk's size in bytes: an env's disk is at least this big. */
  diskBytes: number;
  created: string;
}

interface VmImageMeta {
  /** The container image's name it was built from (older builds say "NAME (vm)"). */
  name: string;
  key: string;
  recipe: ResolvedRecipe;
  diskBytes: number;
  /** Disk space the image takes (its disk is sparse); missing in older builds. */
  size?: number;
  created: string;
}

const KEY = /^[0-9a-f]{16}$/;

async function readVmMeta(key: string): Promise<VmImageMeta | undefined> {
  if (!KEY.test(key)) return undefined;
  const meta = (await readFile(join(vmImagesDir(), key, 'image.json'), 'utf8').then(JSON.parse, () => undefined)) as VmImageMeta | undefined;
  return meta?.key === key && typeof meta.name === 'string' ? meta : undefined;
}

export function vmImagesDir(): string {
  return join(imagesDir(), 'vm');
}

/** The container recipe plus the VM packages. */
export function vmRecipe(recipe: ResolvedRecipe): ResolvedRecipe {
  return { ...recipe, packages: normalizePackages([...recipe.packages, ...VM_PACKAGES]) };
}

/** Distinct from every container image's key: the VM recipe's own key mixed with the VM build version. */
export function vmImageKey(recipe: ResolvedRecipe): string {
  const canonical = JSON.stringify({ vm: VM_IMAGE_VERSION, recipe: imageKey(vmRecipe(recipe)) });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** ext4 needs room for its own metadata and the guest's first writes: a fifth more than the files, plus 256 MiB. */
export function baseDiskBytes(rootfsBytes: number): number {
  const mib = 2 ** 20;
  return Math.ceil((rootfsBytes * 1.2 + 256 * mib) / mib) * mib;
}

export async function readVmImage(key: string): Promise<VmImage | undefined> {
  const meta = await readVmMeta(key);
  if (!meta) return undefined;
  const dir = join(vmImagesDir(), key);
  return {
    key,
    name: meta.name,
    dir,
    rootfs: join(dir, 'rootfs'),
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    disk: join(dir, 'disk.raw'),
    diskBytes: meta.diskBytes,
    created: meta.created,
  };
}

/** Every cached VM image, described like the container images so `env image list|rm|prune` handle both. */
export async function listVmImages(): Promise<ImageInfo[]> {
  const entries = await readdir(vmImagesDir()).catch(() => [] as string[]);
  const images: ImageInfo[] = [];
  for (const key of entries) {
    const meta = await readVmMeta(key);
    if (!meta) continue;
    const dir = join(vmImagesDir(), key);
    images.push({
      key,
      name: meta.name.replace(/ \(vm\)$/, ''),
      kind: 'vm',
      rootfs: join(dir, 'rootfs'),
      dir,
      packages: meta.recipe.packages,
      sizeBytes: meta.size ?? meta.diskBytes,
      created: meta.created,
      source: 'recipe',
      recipe: meta.recipe,
    });
  }
  return images.sort((a, b) => a.name.localeCompare(b.name) || b.created.localeCompare(a.created));
}

/** The VM image for a cached container image, built first when it isn't cached (shared by concurrent callers). */
export async function ensureVmImage(base: ImageInfo, progress: Progress, signal?: AbortSignal): Promise<VmImage> {
  if (!base.recipe) {
    throw new EnvboxError('VM_IMAGE_IMPORTED', `${base.name} is an imported image: VMs are built from recipes (they need a kernel)`, {
      hint: 'use a recipe image with provider: vm (env image list shows them), or provider: container for this image',
    });
  }
  const recipe = base.recipe;
  const key = vmImageKey(recipe);
  const cached = await readVmImage(key);
  if (cached) return cached;
  const name = base.name;
  return withImageLock(key, `building VM image ${name}`, progress, signal, async () => {
    return (await readVmImage(key)) ?? buildVmImage(name, key, vmRecipe(recipe), progress, signal);
  });
}

async function buildVmImage(name: string, key: string, recipe: ResolvedRecipe, progress: Progress, signal?: AbortSignal): Promise<VmImage> {
  if (process.getuid?.() !== 0) {
    throw new EnvboxError('IMAGE_BUILD_NEEDS_ROOT', `building VM image ${name} needs root (mmdebstrap --mode=root)`, {
      hint: 'run the command as root, e.g. with sudo',
    });
  }
  const what = `building VM image ${name}`;
  const started = Date.now();
  const work = await makeTemp(`vm-${key}`);
  try {
    const rootfs = join(work, 'rootfs');
    const setup = join(work, 'setup-hook.sh');
    const customize = join(work, 'customize-hook.sh');
    await writeFile(setup, setupHookScript());
    await writeFile(customize, customizeHookScript());
    await Promise.all([chmod(setup, 0o755), chmod(customize, 0o755)]);
    const args = mmdebstrapArgs(recipe, rootfs, { eatmydata: await eatmydataUsable() });
    // Hooks go before the positional arguments (suite, target, optional mirror) at the end.
    args.splice(args.length - (recipe.mirror ? 3 : 2), 0, `--setup-hook=${setup}`, `--customize-hook=${customize}`);
    progress.log(`${what} (${recipe.suite}, ${recipe.packages.length} packages + dependencies, kernel included)`);
    const result = await runMmdebstrap(args, buildLineReporter(progress, 0.9), signal);
    if (result.aborted) throw aborted(what);
    if (result.code !== 0) {
      const log = failedLogFile(key);
      await writeFile(log, `${['mmdebstrap', ...args].join(' ')}\n${result.lines.join('\n')}\n`);
      throw new EnvboxError('IMAGE_BUILD_FAILED', `${what} failed (mmdebstrap exit ${result.code}):\n${failureLines(result.lines).map((l) => `  ${l}`).join('\n')}`, {
        hint: failureHint(result.lines, log),
        details: { image: name, key, log },
      });
    }
    progress.update('customizing the image', 0.9);
    progress.log(`customized: ${(await customizeRootfs(rootfs)).join('; ')}`);

    progress.update('extracting the kernel and initramfs', 0.92);
    // Debian keeps /vmlinuz and /initrd.img as links to the installed kernel's files.
    await copyFile(await realpath(join(rootfs, 'vmlinuz')), join(work, 'vmlinuz'));
    await copyFile(await realpath(join(rootfs, 'initrd.img')), join(work, 'initrd.img'));

    const diskBytes = baseDiskBytes(await diskUsage(rootfs));
    progress.update(`writing the base disk (${formatSize(diskBytes)} ext4)`, 0.94);
    await runOk('mkfs.ext4', ['-q', '-F', '-L', 'envbox-root', '-m', '1', '-d', rootfs, join(work, 'disk.raw'), `${diskBytes / 2 ** 20}M`], {
      code: 'VM_IMAGE_DISK',
      what: 'mkfs.ext4 -d (the VM base disk)',
      hint: 'apt-get install e2fsprogs (mkfs.ext4 ≥ 1.43 copies a folder into the new filesystem)',
    });
    progress.update('syncing to disk', 0.99);
    await runOk('sync', ['--file-system', work]);
    const meta: VmImageMeta = { name, key, recipe, diskBytes, size: await diskUsage(work), created: new Date().toISOString() };
    await writeFile(join(work, 'build.log'), `${result.lines.join('\n')}\n`);
    await writeFile(join(work, 'image.json'), `${JSON.stringify(meta, null, 2)}\n`);
    await mkdir(vmImagesDir(), { recursive: true, mode: 0o755 });
    await rename(work, join(vmImagesDir(), key));
    await rm(failedLogFile(key), { force: true });
    progress.log(`built VM image ${name} in ${Math.round((Date.now() - started) / 1000)} s`);
    return (await readVmImage(key))!;
  } finally {
    await removeTree(work);
  }
}
