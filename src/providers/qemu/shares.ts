import { mkdir, readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run, runOk } from '../../util/exec.js';
import type { Progress } from '../../util/progress.js';
import { EnvboxError } from '../../util/errors.js';
import { fstabEscape } from '../lxc/config.js';
import type { MountMap } from '../lxc/idmap.js';
import { idmappedBind, idmountHelper } from '../lxc/idmount.js';
import { mountPoints } from '../lxc/rootfs.js';
import type { GuestUser, SharedFolder } from '../provider.js';
import { folderTag } from './argv.js';
import { folderViewPath, type VmPaths } from './layout.js';

/**
 * Shared folders over virtio-9p. QEMU runs as root with security_model=passthrough, so the guest sees
 * and sets real host ownership. Handing it the project folder itself would make the guest's root the
 * host's root in that folder, and a guest user whose uid differs from the owner's (root owns the
 * project, the guest user is 1000) would see none of it as its own. So QEMU gets an idmapped view of
 * the folder (the LXC provider's helper, open_tree + mount_setattr) in which:
 *
 *   the host owner's files appear as the guest user's, and what the guest user writes lands as the owner;
 *   what guest root writes lands as host `nobody` (65534), like an unprivileged container's root;
 *   every other id is itself, except host root's and the guest uid's own files, which show as nobody.
 *
 * git in the guest then sees the project owned by the user running it: no "dubious ownership".
 */

const NOBODY = 65534;
/** The first id past the last one a user namespace can map ((u32)-1 is the invalid id). */
const ID_END = 4294967295;

/** One /proc/PID/uid_map text (on-disk id, id it appears as, count) for the pairs given, identity elsewhere. */
export function pairMap(pairs: [disk: number, seen: number][]): string {
  const kept: [number, number][] = [];
  for (const [disk, seen] of pairs) {
    if (!kept.some(([d, s]) => d === disk || s === seen)) kept.push([disk, seen]);
  }
  const taken = [...new Set(kept.flat())].sort((a, b) => a - b);
  const lines = kept.map(([disk, seen]) => `${disk} ${seen} 1`);
  let start = 0;
  for (const id of [...taken, ID_END]) {
    if (id > start) lines.push(`${start} ${start} ${id - start}`);
    start = id + 1;
  }
  return lines.join('\n');
}

export function vmFolderMap(user: GuestUser): MountMap {
  const { uid, gid, hostUid = uid, hostGid = gid } = user;
  return {
    uid: pairMap([
      [hostUid, uid],
      [NOBODY, 0],
    ]),
    gid: pairMap([
      [hostGid, gid],
      [NOBODY, 0],
    ]),
  };
}

/** The guest's fstab: the root filesystem (grown to the disk's size by systemd-growfs) and one 9p mount per folder. */
export function fstabText(folders: SharedFolder[]): string {
  const lines = ['# envbox: written by every env up; change the Envfile, not this file', '/dev/vda / ext4 rw,x-systemd.growfs 0 0'];
  folders.forEach((folder, i) => {
    // cache=mmap: programs can mmap shared files (git packs, sqlite); nofail: a broken share never stops the boot.
    lines.push(`${folderTag(i)} ${fstabEscape(folder.guest)} 9p trans=virtio,version=9p2000.L,msize=524288,cache=mmap,nofail 0 0`);
  });
  return `${lines.join('\n')}\n`;
}

/**
 * The host paths QEMU shares, one per folder: idmapped views under the env's state folder (mounted when
 * missing, so a start after a host reboot remounts them). Without the helper (no C compiler) a folder
 * whose owner is the guest user's ids is shared as it is, with a note; any other has no safe fallback.
 */
export async function mountFolders(folders: SharedFolder[], user: GuestUser, paths: VmPaths, progress: Progress): Promise<string[]> {
  if (folders.length === 0) return [];
  const helper = await idmountHelper();
  const { uid, gid, hostUid = uid, hostGid = gid } = user;
  if (!helper) {
    if (hostUid !== uid || hostGid !== gid) {
      throw new EnvboxError('IDMAP_HELPER_MISSING', `sharing folders owned by host ${hostUid}:${hostGid} with guest ${uid}:${gid} needs the idmount helper`, {
        hint: 'install a C compiler (apt-get install gcc libc6-dev); envbox builds the helper on the next env up',
      });
    }
    progress.log('no C compiler for the idmount helper: shared folders are passed as they are (guest root writes there as host root)');
    return folders.map((f) => f.host);
  }
  const mounted = await mountPoints();
  const views: string[] = [];
  for (const [index, folder] of folders.entries()) {
    const view = folderViewPath(paths, index);
    await mkdir(view, { recursive: true, mode: 0o700 });
    if (!mounted.has(view)) await idmappedBind(helper, folder.host, view, vmFolderMap(user), false);
    views.push(view);
  }
  return views;
}

/** Unmounts the folder views (lazily: QEMU may still be letting go) and removes their empty mount points. */
export async function unmountFolders(paths: VmPaths): Promise<void> {
  const mounted = await mountPoints();
  for (const view of [...mounted].filter((p) => p.startsWith(`${paths.folders}/`))) {
    if ((await run('umount', [view])).code !== 0) await runOk('umount', ['-l', view], { code: 'UNMOUNT_FAILED' });
  }
  for (const name of await readdir(paths.folders).catch(() => [] as string[])) await rmdir(join(paths.folders, name)).catch(() => {});
  await rmdir(paths.folders).catch(() => {});
}
