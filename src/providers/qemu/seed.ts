import { lstat, mkdir, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { run, runOk } from '../../util/exec.js';
import type { VmImage } from '../../images/vm.js';
import { prepareGuest } from '../lxc/prepare.js';
import type { GuestSpec, SharedFolder } from '../provider.js';
import { SLIRP, type VmPaths } from './layout.js';
import { fstabText } from './shares.js';

/**
 * The env's own files reach the guest through a read-only 9p "seed" share that the image's initramfs
 * applies to the root filesystem before init runs (images/vm-guest.ts): nothing has to write into the
 * qcow2 overlay from the host (no nbd, no guestfish), and the first boot is an ordinary boot.
 *
 * once/    what the LXC provider writes into a container before its first boot (prepareGuest: hostname,
 *          hosts, the user, its key, sudoers, the pinned sshd host key, the network), computed against
 *          the VM image's tree by running prepareGuest on an overlay mount of it, whose upper layer then
 *          holds exactly the files it changed, with their owners and modes. Applied on the first boot only.
 * always/  the fstab with the shared folders, rewritten by every start so Envfile changes take effect.
 */

/** overlayfs splits its options on "," and its layer lists on ":". */
function overlayPath(path: string): string {
  if (/[,:\\]/.test(path)) {
    throw new EnvboxError('STATE_PATH', `${path} contains ",", ":" or "\\", which overlayfs can't take`, {
      hint: 'point XDG_STATE_HOME at a path without those characters',
    });
  }
  return path;
}

export async function writeFirstBootSeed(
  spec: GuestSpec,
  image: VmImage,
  paths: VmPaths,
  hostKey: { privateKey: string; publicKey: string },
): Promise<void> {
  const upper = join(paths.seed, 'once');
  const work = join(paths.dir, 'seed-work');
  const merged = join(paths.dir, 'seed-merged');
  await mkdir(upper, { recursive: true, mode: 0o755 });
  await mkdir(work, { mode: 0o700 });
  await mkdir(merged, { mode: 0o700 });
  try {
    const options = `lowerdir=${overlayPath(image.rootfs)},upperdir=${overlayPath(upper)},workdir=${overlayPath(work)}`;
    await runOk('mount', ['-t', 'overlay', 'overlay', '-o', options, merged], { code: 'SEED_MOUNT', what: 'mounting the image to compute the first-boot files' });
    try {
      const nameservers = spec.network.outbound ? [SLIRP.dns] : [];
      await prepareGuest({ root: merged, onDisk: (id) => id }, spec, { address: SLIRP.guest, gateway: SLIRP.gateway, nameservers }, hostKey);
    } finally {
      if ((await run('umount', [merged])).code !== 0) await run('umount', ['-l', merged]);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
    await rmdir(merged).catch(() => {});
  }
  await removeWhiteouts(upper);
}

/**
 * overlayfs records a deleted lower file as a 0:0 character device in the upper layer; copied into the
 * guest it would be a device node, not a deletion. prepareGuest deletes nothing the image has (the image
 * keeps no host keys), so this only guards against that changing.
 */
async function removeWhiteouts(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await removeWhiteouts(path);
    else if (entry.isCharacterDevice() && (await lstat(path)).rdev === 0) await rm(path);
  }
}

/** Rewrites always/: the guest's fstab for the folders the Envfile has now. */
export async function writeBootSeed(paths: VmPaths, folders: SharedFolder[]): Promise<void> {
  const etc = join(paths.seed, 'always', 'etc');
  await mkdir(etc, { recursive: true, mode: 0o755 });
  await writeFile(join(etc, 'fstab'), fstabText(folders), { mode: 0o644 });
}
