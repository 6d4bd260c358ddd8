import { lstat, readdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * What every image gets done to it once, at build or import time, so creating an env stays a matter of
 * writing a few per-env files. Bump CUSTOMIZE_VERSION whenever this changes: it is part of the cache key,
 * so existing images are rebuilt with the new rules.
 */
export const CUSTOMIZE_VERSION = 1;

/** Units masked in every image: they fetch from the network on a timer, and a dev guest updates when its user says so. */
const NETWORK_UNITS = ['apt-daily.timer', 'apt-daily-upgrade.timer'];

const HOSTS = [
  '127.0.0.1\tlocalhost',
  '::1\tlocalhost ip6-localhost ip6-loopback',
  'ff02::1\tip6-allnodes',
  'ff02::2\tip6-allrouters',
  '',
].join('\n');

/**
 * Applies the image rules to a root filesystem; returns one line per change. Imported rootfs tarballs are
 * not trusted, and this runs as root: a path whose parent is a symlink (which would resolve on the host)
 * is skipped instead of followed.
 */
export async function customizeRootfs(root: string): Promise<string[]> {
  const done: string[] = [];

  // Each env gets its own host key, generated on the host at creation and pinned there.
  const sshDir = await inside(root, 'etc/ssh');
  if (sshDir && (await kind(sshDir)) === 'dir') {
    const keys = (await readdir(sshDir)).filter((f) => f.startsWith('ssh_host_'));
    for (const key of keys) await unlink(join(sshDir, key));
    if (keys.length > 0) done.push(`removed ${keys.length} ssh host key files`);
  }

  // An empty machine-id makes systemd generate a fresh one on each guest's first boot.
  const machineId = await inside(root, 'etc/machine-id');
  if (machineId && ['file', 'missing'].includes(await kind(machineId))) {
    await writeFile(machineId, '');
    done.push('emptied /etc/machine-id');
  }
  const dbusId = await inside(root, 'var/lib/dbus/machine-id');
  if (dbusId && (await kind(dbusId)) === 'file') {
    await unlink(dbusId);
    done.push('removed /var/lib/dbus/machine-id');
  }

  // Host facts mmdebstrap copies in; the provider writes the guest's own at env creation. A missing
  // /etc/hostname lets the container's name stand instead of systemd resetting it at boot.
  for (const file of ['etc/hostname', 'etc/resolv.conf']) {
    const path = await inside(root, file);
    if (path && (await kind(path)) === 'file') {
      await unlink(path);
      done.push(`removed /${file}`);
    }
  }
  const hosts = await inside(root, 'etc/hosts');
  if (hosts && (await kind(hosts)) === 'missing') {
    await writeFile(hosts, HOSTS);
    done.push('wrote /etc/hosts');
  }

  // An unprivileged container cannot mount debugfs; masking the unit keeps `systemctl is-system-running`
  // at "running" instead of "degraded".
  const units = await inside(root, 'etc/systemd/system');
  if (units && (await kind(units)) === 'dir') {
    for (const unit of ['sys-kernel-debug.mount', ...NETWORK_UNITS]) {
      await rm(join(units, unit), { force: true });
      await symlink('/dev/null', join(units, unit));
    }
    done.push(`masked sys-kernel-debug.mount ${NETWORK_UNITS.join(' ')}`);
  }
  return done;
}

type Kind = 'file' | 'dir' | 'link' | 'other' | 'missing';

async function kind(path: string): Promise<Kind> {
  try {
    const st = await lstat(path);
    return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  } catch {
    return 'missing';
  }
}

/** `root/rel` if every directory on the way (not rel itself) is a real directory, else undefined. */
async function inside(root: string, rel: string): Promise<string | undefined> {
  const parts = rel.split('/');
  let path = root;
  for (const part of parts.slice(0, -1)) {
    path = join(path, part);
    if ((await kind(path)) !== 'dir') return undefined;
  }
  return join(path, parts.at(-1)!);
}
