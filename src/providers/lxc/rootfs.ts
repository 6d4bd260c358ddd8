import { existsSync } from 'node:fs';
import { chown, lstat, mkdir, readdir, readFile, rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { run, runOk } from '../../util/exec.js';
import type { Progress } from '../../util/progress.js';
import type { GuestSpec } from '../provider.js';
import { folderMountMap, imageMountMap } from './idmap.js';
import { overlayOnIdmapped } from './hostfacts.js';
import { idmappedBind, idmountHelper } from './idmount.js';
import { folderMountPath, RUN_DIR, type EnvPaths, type LxcMachine } from './layout.js';

/**
 * The guest's root filesystem and shared folders as host mounts.
 *
 * Overlay mode (the normal one): the image is bind-mounted read-only and idmapped so its root appears as
 * the env's host range (imageMountMap), and overlayfs puts the env's upper layer on top. The merged tree
 * therefore already carries the env's host ids, so LXC uses it as a plain dir rootfs. Measured here: a new
 * env's rootfs costs two mounts (~10 ms) and no copy. The simpler routes fail on this kernel and LXC 5.0:
 * LXC's `overlay:` backend refuses `idmap=container` ("only supports the dir storage driver") and an
 * overlay mount can't itself be idmapped (mount_setattr: EINVAL); overlay on idmapped layers works
 * (Linux ≥ 5.19). Shared folders are idmapped the same way, with folderMountMap.
 *
 * Copy mode (no C compiler to build the idmount helper, or ENVBOX_LXC_ROOTFS=copy): a private copy of the
 * image (reflinked where the filesystem can) that LXC idmaps itself; slower to create, same guest.
 */

export type RootfsMode = LxcMachine['rootfsMode'];

export async function chooseMode(progress: Progress): Promise<RootfsMode> {
  const forced = process.env.ENVBOX_LXC_ROOTFS;
  if (forced === 'copy') return 'copy';
  if ((await idmountHelper()) && overlayOnIdmapped()) return 'overlay';
  if (forced === 'overlay') {
    throw new EnvboxError('IDMAP_HELPER_MISSING', 'ENVBOX_LXC_ROOTFS=overlay needs Linux ≥ 5.19 and the idmount helper (built with cc)', {
      hint: 'install a C compiler (apt-get install gcc libc6-dev) or unset ENVBOX_LXC_ROOTFS',
    });
  }
  progress.log('copying the image for this env (no idmount helper or Linux < 5.19; env doctor says which)');
  return 'copy';
}

/**
 * In copy mode LXC idmaps folders with the container's own map (on-disk id N is guest id N), so the guest
 * user only owns the project when its ids equal the host owner's.
 */
export function checkCopyModeFolders(spec: GuestSpec): void {
  const { uid, gid, hostUid = uid, hostGid = gid } = spec.user;
  if (spec.folders.length === 0 || (uid === hostUid && gid === hostGid)) return;
  throw new EnvboxError('IDMAP_HELPER_MISSING', `sharing folders owned by host ${hostUid}:${hostGid} with guest ${uid}:${gid} needs the idmount helper`, {
    hint: 'install a C compiler (apt-get install gcc libc6-dev); envbox builds the helper on the next env up',
  });
}

/** Mount points, decoded from /proc/self/mountinfo (octal escapes such as \040 for a space). */
export async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return new Set(
    text
      .split('\n')
      .map((line) => line.split(' ')[4])
      .filter((p): p is string => !!p)
      .map((p) => p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)))),
  );
}

/** overlayfs splits its options on "," and its layer lists on ":"; envbox refuses such paths instead of escaping. */
function overlayPath(path: string): string {
  if (/[,:\\]/.test(path)) {
    throw new EnvboxError('STATE_PATH', `${path} contains ",", ":" or "\\", which overlayfs can't take`, {
      hint: 'point XDG_STATE_HOME at a path without those characters',
    });
  }
  return path;
}

/** The env's own data: an empty upper layer owned by guest root, or the private copy of the image. */
export async function createData(spec: GuestSpec, paths: EnvPaths, mode: RootfsMode, base: number, progress: Progress): Promise<void> {
  await mkdir(paths.data, { recursive: true, mode: 0o700 });
  if (mode === 'overlay') {
    await mkdir(overlayPath(paths.upper), { mode: 0o755 });
    await chown(paths.upper, base, base);
    await mkdir(overlayPath(paths.work), { mode: 0o700 });
    return;
  }
  progress.update('copying the image');
  const partial = `${paths.copy}.partial`;
  await rm(partial, { recursive: true, force: true });
  await runOk('cp', ['-a', '--reflink=auto', `${spec.rootfs}/.`, `${partial}/`], { code: 'ROOTFS_COPY', what: 'copying the image' });
  await rename(partial, paths.copy);
}

/** Mounts what the env's rootfs and folders need, skipping what is already mounted (a start after a stop). */
export async function mountEnv(spec: GuestSpec, machine: LxcMachine, paths: EnvPaths): Promise<void> {
  if (!existsSync(machine.image)) {
    throw new EnvboxError('IMAGE_GONE', `the image this env was made from is gone (${machine.image})`, {
      hint: 'env destroy, then env up (the env is rebuilt from the current image)',
    });
  }
  await mkdir(RUN_DIR, { recursive: true, mode: 0o711 });
  await mkdir(paths.mnt, { recursive: true, mode: 0o711 });
  const mounted = await mountPoints();
  await mkdir(paths.rootfs, { recursive: true });
  if (machine.rootfsMode === 'copy') {
    if (!mounted.has(paths.rootfs)) await runOk('mount', ['--bind', paths.copy, paths.rootfs], { code: 'ROOTFS_MOUNT' });
    // LXC resolves idmapped mount sources as the container's root, who can't get into a 0700 home or
    // tmp folder: it gets a plain bind under /run/envbox instead and idmaps that.
    for (const [index, folder] of spec.folders.entries()) {
      const target = folderMountPath(paths, index);
      await mkdir(target, { recursive: true });
      if (!mounted.has(target)) await runOk('mount', ['--bind', folder.host, target], { code: 'FOLDER_MOUNT', what: `mounting ${folder.host}` });
    }
    await emptyGuestTmp(paths.rootfs);
    return;
  }
  const helper = await idmountHelper();
  if (!helper) {
    throw new EnvboxError('IDMAP_HELPER_MISSING', 'this env needs the idmount helper, which could not be built', {
      hint: 'install a C compiler (apt-get install gcc libc6-dev)',
    });
  }
  // The folders don't depend on the rootfs: mount them alongside it.
  const rootfs = async () => {
    await mkdir(paths.lower, { recursive: true });
    if (!mounted.has(paths.lower)) await idmappedBind(helper, machine.image, paths.lower, imageMountMap(machine.idmapBase), true);
    if (mounted.has(paths.rootfs)) return;
    const options = `lowerdir=${overlayPath(paths.lower)},upperdir=${overlayPath(paths.upper)},workdir=${overlayPath(paths.work)}`;
    await runOk('mount', ['-t', 'overlay', 'overlay', '-o', options, paths.rootfs], { code: 'ROOTFS_MOUNT', what: 'mounting the overlay rootfs' });
  };
  const folder = async (host: string, index: number) => {
    const target = folderMountPath(paths, index);
    await mkdir(target, { recursive: true });
    if (!mounted.has(target)) await idmappedBind(helper, host, target, folderMountMap(machine.idmapBase, spec.user), false);
  };
  await Promise.all([rootfs(), ...spec.folders.map((f, index) => folder(f.host, index))]);
  await emptyGuestTmp(paths.rootfs);
}

/**
 * Empties the guest's /tmp before it boots, as systemd-tmpfiles would early in boot (the guest's
 * tmp.conf is changed to leave it to envbox): sshd answers before that point, and a file the first
 * command wrote there would be swept away. The guest is not running, so nothing moves meanwhile; a
 * /tmp that is not a real folder (a symlink the guest made) is left alone, never followed.
 */
export async function emptyGuestTmp(rootfs: string): Promise<void> {
  const tmp = join(rootfs, 'tmp');
  const st = await lstat(tmp).catch(() => undefined);
  if (!st?.isDirectory()) return;
  for (const name of await readdir(tmp)) await rm(join(tmp, name), { recursive: true, force: true });
}

/** A mount something still holds (a shell cd'ed into it) is detached now and freed when let go. */
async function unmount(path: string, mounted: Set<string>): Promise<void> {
  if (!mounted.has(path)) return;
  if ((await run('umount', [path])).code === 0) return;
  await runOk('umount', ['-l', path], { code: 'UNMOUNT_FAILED', hint: `find what uses it with: fuser -vm ${path}` });
}

/**
 * Unmounts folders, rootfs and image (in that order) and removes the empty mount points. Folder mount
 * points are removed with rmdir only: never anything recursive next to a user's project.
 */
export async function unmountEnv(paths: EnvPaths): Promise<void> {
  const mounted = await mountPoints();
  const folders = [...mounted].filter((p) => p.startsWith(`${paths.folders}/`));
  for (const folder of folders) await unmount(folder, mounted);
  await unmount(paths.rootfs, mounted);
  await unmount(paths.lower, mounted);
  for (const name of await readdir(paths.folders).catch(() => [] as string[])) await rmdir(join(paths.folders, name)).catch(() => {});
  for (const dir of [paths.folders, paths.rootfs, paths.lower, paths.mnt]) await rmdir(dir).catch(() => {});
}

/** Removes the env's data (upper layer or copy). Refuses while anything of the env is still mounted. */
export async function removeData(paths: EnvPaths): Promise<void> {
  const mounted = [...(await mountPoints())].filter((p) => p === paths.mnt || p.startsWith(`${paths.mnt}/`));
  if (mounted.length > 0) {
    throw new EnvboxError('UNMOUNT_FAILED', `still mounted: ${mounted.join(', ')}`, { hint: `unmount them (umount -l PATH) and destroy again` });
  }
  await rm(paths.data, { recursive: true, force: true });
}
