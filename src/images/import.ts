import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { EnvboxError, UsageError } from '../util/errors.js';
import { run, runOk } from '../util/exec.js';
import type { Progress } from '../util/progress.js';
import { formatSize } from '../util/size.js';
import { customizeRootfs } from './customize.js';
import { aborted, withImageLock } from './lock.js';
import { IMPORT_NAME } from './resolve.js';
import { diskUsage, install, listCached, makeTemp, removeTree, type ImageInfo } from './store.js';

/** tar's flag for a rootfs tarball's compression, from its name; undefined for names tar won't be asked to guess. */
export function tarCompression(file: string): string[] | undefined {
  if (/\.tar$/.test(file)) return [];
  if (/\.(tar\.zst|tzst)$/.test(file)) return ['--zstd'];
  if (/\.(tar\.gz|tgz)$/.test(file)) return ['--gzip'];
  if (/\.(tar\.xz|txz)$/.test(file)) return ['--xz'];
  return undefined;
}

export interface ListingCheck {
  /** Members that would land outside the folder they are extracted into. */
  escapes: string[];
  /** Has etc/os-release: a Linux root filesystem, not a folder tarred from inside. */
  osRelease: boolean;
}

/** Checks `tar --list` output (one member per line, as tar quotes them). */
export function checkListing(listing: string): ListingCheck {
  const escapes: string[] = [];
  let osRelease = false;
  for (const member of listing.split('\n')) {
    if (!member) continue;
    if (member.startsWith('/') || member.split('/').includes('..')) escapes.push(member);
    if (member.replace(/^(\.\/)+/, '') === 'etc/os-release') osRelease = true;
  }
  return { escapes, osRelease };
}

/**
 * Imports a root filesystem tarball the user made (docker export, another builder, a backup) as the image
 * `name`, referable in an Envfile like a recipe. Importing a name again replaces the old image.
 */
export async function importImage(file: string, name: string, progress: Progress, signal?: AbortSignal): Promise<ImageInfo> {
  if (!IMPORT_NAME.test(name)) {
    throw new UsageError('IMAGE_NAME_INVALID', `${JSON.stringify(name)} is not a name for an imported image`, {
      hint: 'use lowercase letters, digits, dots, dashes and underscores, without a slash (slashes name recipes)',
    });
  }
  const path = resolve(file);
  const compression = tarCompression(path);
  if (!compression) {
    throw new UsageError('IMAGE_IMPORT_FORMAT', `${file} is not a .tar, .tar.zst, .tar.gz or .tar.xz file`, {
      hint: 'make the tarball with e.g. tar --zstd -cf rootfs.tar.zst -C ROOTFS .',
    });
  }
  if (process.getuid?.() !== 0) {
    throw new EnvboxError('IMAGE_IMPORT_NEEDS_ROOT', `importing image ${name} needs root, to keep the files' owners`, {
      hint: 'run the command as root, e.g. with sudo',
    });
  }
  const size = (await stat(path).catch(() => undefined))?.size;
  if (size === undefined) throw new UsageError('IMAGE_IMPORT_MISSING', `${file} does not exist`, { hint: 'check the path' });

  const what = `importing image ${name}`;
  try {
    progress.update(`checking ${basename(path)}`);
    const listing = await run('tar', ['--list', ...compression, '--file', path], { signal });
    if (listing.code !== 0) throw invalid(file, `tar cannot read it: ${listing.stderr.trim().split('\n').slice(-3).join(' ')}`);
    const check = checkListing(listing.stdout);
    if (check.escapes.length > 0) {
      throw invalid(file, `it has members outside its root folder: ${check.escapes.slice(0, 5).join(', ')}`);
    }
    if (!check.osRelease) throw invalid(file, 'it has no etc/os-release, so it is not a Linux root filesystem');

    progress.update(`hashing ${basename(path)} (${formatSize(size)})`);
    const key = createHash('sha256').update(`import\0${name}\0${await sha256(path)}`).digest('hex').slice(0, 16);
    return await withImageLock(key, what, progress, signal, () => unpack(path, compression, name, key, progress, signal));
  } catch (err) {
    // tar killed by the abort signal surfaces as Node's AbortError; report it like an interrupted build.
    if (signal?.aborted) throw aborted(what);
    throw err;
  }
}

/** Extracts into a work folder, customizes, and installs as `key`; the caller holds the image lock. */
async function unpack(path: string, compression: string[], name: string, key: string, progress: Progress, signal?: AbortSignal): Promise<ImageInfo> {
  const work = await makeTemp(key);
  try {
    const rootfs = join(work, 'rootfs');
    await mkdir(rootfs, { mode: 0o755 });
    progress.update(`extracting ${basename(path)}`);
    // Owners, modes, xattrs and file capabilities as the tarball has them: the guest's sudo and ping need them.
    // GNU tar itself refuses to write through symlinks that the archive created.
    const extract = ['--extract', ...compression, '--file', path, '--directory', rootfs];
    await runOk('tar', [...extract, '--numeric-owner', '--same-owner', '--preserve-permissions', '--xattrs', '--xattrs-include=*'], {
      signal,
      code: 'IMAGE_IMPORT_INVALID',
      what: `extracting ${path}`,
      hint: 'check that the tarball is complete and was made from a root filesystem',
    });
    progress.log(`customized: ${(await customizeRootfs(rootfs)).join('; ')}`);
    const previous = (await listCached()).filter((i) => i.source === 'import' && i.name === name && i.key !== key);
    const info = await install(work, {
      name,
      key,
      source: 'import',
      recipe: null,
      packages: [],
      size: await diskUsage(rootfs),
      created: new Date().toISOString(),
    });
    for (const old of previous) await removeTree(old.dir);
    progress.log(`imported image ${name} (${formatSize(info.sizeBytes)}) from ${basename(path)}`);
    return info;
  } finally {
    await removeTree(work);
  }
}

function invalid(file: string, why: string): EnvboxError {
  return new UsageError('IMAGE_IMPORT_INVALID', `cannot import ${file}: ${why}`, {
    hint: 'make the tarball from inside the root filesystem, e.g. tar --zstd -cf rootfs.tar.zst -C ROOTFS .',
  });
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
