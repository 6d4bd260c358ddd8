import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { readImage } from '../../images/store.js';
import { EnvboxError } from '../../util/errors.js';
import type { Progress } from '../../util/progress.js';
import { IncusApi } from './api.js';

/**
 * envbox's recipe-built images in a daemon's image store. The daemon never downloads anything: the
 * cached rootfs is streamed to it as a unified image tarball (metadata.yaml + rootfs/) and aliased by
 * envbox's cache key, so each image is imported once per daemon and found again by that alias.
 */

export interface CachedImage {
  key: string;
  name: string;
  dir: string;
  sizeBytes: number;
}

export interface DaemonImage {
  fingerprint: string;
  alias: string;
}

export const imageAlias = (key: string) => `envbox-${key}`;

const ARCHITECTURES: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', arm: 'armv7l', ia32: 'i686', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** Incus's name for the architecture Node reports. */
export function incusArchitecture(arch: string = process.arch): string {
  const name = ARCHITECTURES[arch];
  if (!name) throw new EnvboxError('INCUS_ARCH', `envbox doesn't know Incus's name for the ${arch} architecture`);
  return name;
}

/** The image's metadata.yaml. The envbox.* properties mark it as envbox's (destroy removes only those). */
export function imageMetadata(image: Pick<CachedImage, 'key' | 'name'>, arch: string, now: Date): string {
  const [os, release] = image.name.includes('/') ? image.name.split('/', 2) : [image.name, ''];
  return stringify({
    architecture: arch,
    creation_date: Math.floor(now.getTime() / 1000),
    properties: {
      description: `envbox ${image.name} (${image.key})`,
      os,
      release,
      'envbox.image': image.name,
      'envbox.key': image.key,
    },
  });
}

/** The cached image a GuestSpec's rootfs belongs to (`<cache>/images/<key>/rootfs`). */
export async function cachedImageOf(rootfs: string): Promise<CachedImage> {
  const info = await readImage(basename(dirname(rootfs)));
  if (!info || info.rootfs !== rootfs) {
    throw new EnvboxError('INCUS_IMAGE_MISSING', `${rootfs} is not a cached envbox image`, { hint: 'env image list shows the cached images; env up builds the one the Envfile names' });
  }
  return { key: info.key, name: info.name, dir: info.dir, sizeBytes: info.sizeBytes };
}

export async function findDaemonImage(api: IncusApi, key: string): Promise<DaemonImage | undefined> {
  const alias = imageAlias(key);
  const found = await api.find<{ target: string }>(`/1.0/images/aliases/${alias}`, `looking up image ${alias}`);
  return found && { fingerprint: found.target, alias };
}

/** Streams the cached image to the daemon; returns its fingerprint. */
async function upload(api: IncusApi, image: CachedImage, progress: Progress): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'envbox-incus-image-'));
  try {
    await writeFile(join(work, 'metadata.yaml'), imageMetadata(image, incusArchitecture(), new Date()));
    // prettier-ignore
    const tar = spawn('tar', [
      '--create', '--numeric-owner', '--xattrs', '--xattrs-include=*', '--file', '-',
      '-C', work, 'metadata.yaml', '-C', image.dir, 'rootfs',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let sent = 0;
    tar.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    tar.stdout.on('data', (d: Buffer) => {
      sent += d.length;
      if (image.sizeBytes > 0) progress.update(`sending ${image.name} to ${api.product}`, Math.min(0.99, sent / image.sizeBytes));
    });
    const tarDone = new Promise<number>((resolve, reject) => {
      tar.once('error', reject);
      tar.once('close', (code) => resolve(code ?? 1));
    });
    const reply = await api.raw('POST', '/1.0/images', {
      headers: { 'Content-Type': 'application/octet-stream', [api.header('Public')]: '0', [api.header('Filename')]: `envbox-${image.key}.tar` },
      body: tar.stdout,
    });
    const code = await tarDone;
    if (code !== 0) throw new EnvboxError('INCUS_IMAGE_TAR', `packing ${image.dir} failed (tar exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' ')}`, { hint: 'env image build --force rebuilds the cached image' });
    progress.update(`${api.product} is unpacking ${image.name}`);
    const op = await api.settle<{ fingerprint?: string } | null>(reply, `importing image ${image.name}`, progress);
    if (!op?.fingerprint) throw new EnvboxError('INCUS_IMAGE_IMPORT', `${api.product} imported ${image.name} but did not say its fingerprint`);
    return op.fingerprint;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The daemon's copy of a cached image, imported first when it has none. Call under the image lock:
 * two imports at once would leave a second, unaliased copy behind.
 */
export async function ensureDaemonImage(api: IncusApi, image: CachedImage, progress: Progress): Promise<DaemonImage & { imported: boolean }> {
  const found = await findDaemonImage(api, image.key);
  if (found) return { ...found, imported: false };
  const fingerprint = await upload(api, image, progress);
  const alias = imageAlias(image.key);
  try {
    await api.call('POST', '/1.0/images/aliases', `naming image ${alias}`, { name: alias, target: fingerprint, description: `envbox ${image.name}` });
  } catch (err) {
    // Another client (a remote daemon is shared) aliased its own import first: use that one, drop ours.
    const other = await findDaemonImage(api, image.key);
    if (!other) throw err;
    if (other.fingerprint !== fingerprint) await api.call('DELETE', `/1.0/images/${fingerprint}`, 'removing a duplicate image');
    return { ...other, imported: false };
  }
  return { fingerprint, alias, imported: true };
}

/**
 * Removes an image envbox imported once no instance is made from it any more; images envbox didn't
 * import are never touched. Returns whether it removed it.
 */
export async function releaseDaemonImage(api: IncusApi, fingerprint: string): Promise<boolean> {
  const image = await api.find<{ properties?: Record<string, string> }>(`/1.0/images/${fingerprint}`, 'looking up the image');
  if (!image?.properties?.['envbox.key']) return false;
  const instances = await api.get<{ config?: Record<string, string> }[]>('/1.0/instances?recursion=1', 'listing instances');
  if (instances.some((i) => i.config?.['volatile.base_image'] === fingerprint)) return false;
  await api.call('DELETE', `/1.0/images/${fingerprint}`, `removing image ${fingerprint.slice(0, 12)}`);
  return true;
}
