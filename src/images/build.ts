import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError } from '../util/errors.js';
import { runOk } from '../util/exec.js';
import { imagesDir } from '../util/paths.js';
import type { Progress } from '../util/progress.js';
import { formatSize } from '../util/size.js';
import { buildLineReporter, failureHint, failureLines } from './build-progress.js';
import { customizeRootfs } from './customize.js';
import { aborted } from './lock.js';
import { eatmydataUsable, mmdebstrapArgs, runMmdebstrap } from './mmdebstrap.js';
import type { ResolvedImage } from './resolve.js';
import { diskUsage, install, makeTemp, removeTree, type ImageInfo } from './store.js';

/** Where a failed build's full output is kept (the work folder is gone by then). */
export function failedLogFile(key: string): string {
  return join(imagesDir(), `.${key}.failed.log`);
}

/**
 * Builds a recipe image into a work folder in the cache and renames it into place. The caller holds the
 * image's lock. The work folder is removed whatever happens: failure, abort or success.
 */
export async function buildRecipeImage(image: ResolvedImage, progress: Progress, signal?: AbortSignal): Promise<ImageInfo> {
  const recipe = image.recipe;
  if (!recipe) throw new Error(`buildRecipeImage: ${image.name} is not a recipe image`);
  if (process.getuid?.() !== 0) {
    throw new EnvboxError('IMAGE_BUILD_NEEDS_ROOT', `building image ${image.name} needs root (mmdebstrap --mode=root)`, {
      hint: 'run the command as root, e.g. with sudo',
    });
  }
  const what = `building image ${image.name}`;
  const started = Date.now();
  const work = await makeTemp(image.key);
  try {
    const rootfs = join(work, 'rootfs');
    const args = mmdebstrapArgs(recipe, rootfs, { eatmydata: await eatmydataUsable() });
    progress.log(`${what} (${recipe.suite}, ${recipe.packages.length} packages + dependencies)`);
    const result = await runMmdebstrap(args, buildLineReporter(progress), signal);
    if (result.aborted) throw aborted(what);
    if (result.code !== 0) {
      const log = failedLogFile(image.key);
      await writeFile(log, `${['mmdebstrap', ...args].join(' ')}\n${result.lines.join('\n')}\n`);
      const quoted = failureLines(result.lines).map((l) => `  ${l}`).join('\n');
      throw new EnvboxError('IMAGE_BUILD_FAILED', `${what} failed (mmdebstrap exit ${result.code}):\n${quoted}`, {
        hint: failureHint(result.lines, log),
        details: { image: image.name, key: image.key, log },
      });
    }

    progress.update('customizing the image', 0.97);
    progress.log(`customized: ${(await customizeRootfs(rootfs)).join('; ')}`);
    await writeFile(join(work, 'build.log'), `${result.lines.join('\n')}\n`);
    // dpkg ran without fsync (see mmdebstrap.ts): flush once, before image.json declares the image complete.
    progress.update('syncing to disk', 0.99);
    await runOk('sync', ['--file-system', rootfs]);
    const size = await diskUsage(rootfs);
    const info = await install(work, {
      name: image.name,
      key: image.key,
      source: 'recipe',
      recipe,
      packages: recipe.packages,
      size,
      created: new Date().toISOString(),
    });
    await rm(failedLogFile(image.key), { force: true });
    progress.log(`built image ${image.name} (${formatSize(size)}) in ${Math.round((Date.now() - started) / 1000)} s`);
    return info;
  } finally {
    await removeTree(work);
  }
}
