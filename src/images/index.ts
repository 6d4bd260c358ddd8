import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError, UsageError } from '../util/errors.js';
import { imagesDir } from '../util/paths.js';
import { silentProgress, type Progress } from '../util/progress.js';
import { closest } from '../util/suggest.js';
import { buildRecipeImage } from './build.js';
import { lockHolder, withImageLock } from './lock.js';
import { resolveImage, type ImageRef, type ResolvedImage } from './resolve.js';
import { listCached, readImage, removeTree, staleTemps, type ImageInfo } from './store.js';
import { listVmImages } from './vm.js';

/**
 * Images: recipes from templates/images built with mmdebstrap, or imported rootfs tarballs, cached under
 * the XDG cache dir by a hash of what they contain. Nothing here builds unless asked to (ensureImage, buildImage).
 */

export { importImage } from './import.js';
export { listRecipes, REQUIRED_PACKAGES, templatesDir, type ResolvedRecipe } from './recipe.js';
export { imageKey, resolveImage, type ImageRef, type ResolvedImage } from './resolve.js';
export { readImage, type ImageInfo, type ImageKind, type ImageSource } from './store.js';
export { ensureVmImage, readVmImage, vmImagesDir, type VmImage } from './vm.js';

/** The cached image for `ref`, if it has been built (or imported). */
export async function findImage(ref: ImageRef): Promise<ImageInfo | undefined> {
  return readImage((await resolveImage(ref)).key);
}

/** The image for `ref`, built first if it isn't cached; concurrent callers for one image share one build. */
export async function ensureImage(ref: ImageRef, progress: Progress, signal?: AbortSignal): Promise<ImageInfo> {
  const image = await resolveImage(ref);
  return (await readImage(image.key)) ?? build(image, progress, signal, false);
}

/** Builds the image for `ref`; `force` rebuilds it even when cached (e.g. to pick up Debian's updates). */
export async function buildImage(
  ref: ImageRef,
  progress: Progress,
  opts: { force?: boolean; signal?: AbortSignal } = {},
): Promise<ImageInfo> {
  return build(await resolveImage(ref), progress, opts.signal, opts.force ?? false);
}

async function build(image: ResolvedImage, progress: Progress, signal: AbortSignal | undefined, force: boolean): Promise<ImageInfo> {
  if (image.source === 'import') {
    throw new UsageError('IMAGE_IMPORTED', `${image.name} is an imported image: there is no recipe to build it from`, {
      hint: `import its tarball again to replace it (env image import FILE ${image.name})`,
    });
  }
  return withImageLock(image.key, `building image ${image.name}`, progress, signal, async () => {
    // Whoever held the lock before us may have just built it.
    const cached = force ? undefined : await readImage(image.key);
    if (cached) return cached;
    // A build killed outright (no chance to clean up) leaves a few hundred MB behind; reclaim it now.
    for (const dir of await staleTemps()) await removeTree(dir);
    return buildRecipeImage(image, progress, signal);
  });
}

/** Container images, then VM images. */
export async function listImages(): Promise<ImageInfo[]> {
  return [...(await listCached()), ...(await listVmImages())];
}

/** Which envs use which image keys: the name of every env, by key. */
export type ImageUsers = Map<string, string[]>;

/**
 * Removes cached images by name (every build of it, container and VM) or key (a unique prefix of 6+
 * characters will do). An image an env is built on is refused: its files are that env's lower layer
 * (container) or backing disk (VM), and removing them would break it.
 */
export async function removeImage(nameOrKey: string, users: ImageUsers = new Map()): Promise<ImageInfo[]> {
  const images = await listImages();
  let matches = images.filter((i) => i.name === nameOrKey || i.key === nameOrKey);
  if (matches.length === 0 && /^[0-9a-f]{6,}$/.test(nameOrKey)) matches = images.filter((i) => i.key.startsWith(nameOrKey));
  if (matches.length === 0) {
    const guess = closest(nameOrKey, [...new Set(images.map((i) => i.name))]);
    throw new UsageError('IMAGE_NOT_FOUND', `no cached image ${JSON.stringify(nameOrKey)}${guess ? ` — did you mean ${guess}?` : ''}`, {
      hint: 'see the cached images with env image list',
    });
  }
  if (new Set(matches.map((i) => i.name)).size > 1) {
    throw new UsageError('IMAGE_AMBIGUOUS', `${nameOrKey} matches several images: ${matches.map((i) => `${i.name} (${i.key})`).join(', ')}`, {
      hint: 'give more characters of the key, or the image name',
    });
  }
  const used = matches.filter((i) => users.has(i.key));
  if (used.length > 0) {
    const names = [...new Set(used.flatMap((i) => users.get(i.key)!))];
    throw new EnvboxError('IMAGE_IN_USE', `${nameOrKey} is in use by ${names.length === 1 ? 'env' : 'envs'} ${names.join(', ')}: removing it would break ${names.length === 1 ? 'that env' : 'them'}`, {
      hint: 'run env destroy in those envs\' folders first (env list shows them), then remove the image',
      details: { envs: names, keys: used.map((i) => i.key) },
    });
  }
  for (const image of matches) {
    await withImageLock(image.key, `removing image ${image.name}`, silentProgress, undefined, () => removeTree(image.dir));
  }
  return matches;
}

/**
 * Removes every cached image whose key is not in `keepKeys` (the images envs still use), and what killed
 * builds left behind. Imported images stay unless `imports` is set: they cannot be rebuilt from a recipe.
 * Images being built right now are left alone.
 */
export async function pruneImages(keepKeys: Set<string>, opts: { imports?: boolean } = {}): Promise<ImageInfo[]> {
  const removed: ImageInfo[] = [];
  for (const image of await listImages()) {
    if (keepKeys.has(image.key) || (image.source === 'import' && !opts.imports)) continue;
    if ((await lockHolder(image.key)) !== undefined) continue;
    await removeTree(image.dir);
    removed.push(image);
  }
  for (const dir of await staleTemps()) await removeTree(dir);
  for (const entry of await readdir(imagesDir()).catch(() => [] as string[])) {
    const key = /^\.([0-9a-f]{16})\.(lock|failed\.log)$/.exec(entry)?.[1];
    if (key && (await lockHolder(key)) === undefined) await rm(join(imagesDir(), entry), { force: true });
  }
  return removed;
}
