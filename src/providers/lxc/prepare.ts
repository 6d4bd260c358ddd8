import { randomBytes } from 'node:crypto';
import { chmod, chown, lchown, lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, posix, relative } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import type { GuestSpec } from '../provider.js';
import { generateEd25519 } from '../../ssh/openssh-key.js';
import {
  CONTAINER_IDLE_GENERATORS,
  CONTAINER_IDLE_UNITS,
  groupWithUser,
  gshadowWithUser,
  hostsFile,
  interfacesWithoutEth0,
  networkdUnit,
  NOLOGIN_TMPFILES,
  NOLOGIN_TMPFILES_PATH,
  TMP_TMPFILES,
  TMP_TMPFILES_PATH,
  passwdWithUser,
  resolvConf,
  shadowWithUser,
  SSHD_DROPIN_PATH,
  SSHD_UNIT_DROPIN_PATH,
  sshdDropIn,
  sshdUnitDropIn,
  sudoersFor,
  upstreamNameservers,
} from './guestfiles.js';

/**
 * The guest's root as seen from the host (the mounted rootfs) and how a guest id is stored there: shifted
 * to the env's host range in overlay mode, as-is in copy mode (LXC idmaps that one at boot).
 */
export interface GuestFs {
  root: string;
  onDisk(guestId: number): number;
}

/**
 * Host path of a guest path, resolving symlinks as the guest would (an absolute link is relative to the
 * guest's root, `..` stops there), so a link in the image never leads back into the host. With
 * `followLast` false the last component itself is returned even if it is a link (to replace it).
 */
async function hostPath(fs: GuestFs, guestPath: string, followLast = true): Promise<string> {
  const pending = guestPath.split('/').filter(Boolean);
  const resolved: string[] = [];
  for (let links = 0; pending.length > 0; ) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const path = join(fs.root, ...resolved, part);
    const stat = await lstat(path).catch(() => undefined);
    if (!stat?.isSymbolicLink() || (!followLast && pending.length === 0)) {
      resolved.push(part);
      continue;
    }
    if (++links > 40) throw new EnvboxError('GUEST_PATH_LOOP', `too many symlinks resolving ${guestPath} in the image`);
    const target = await readlink(path);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return join(fs.root, ...resolved);
}

interface Owner {
  uid: number;
  gid: number;
  mode: number;
}

const ROOT = (mode: number): Owner => ({ uid: 0, gid: 0, mode });

/**
 * Creates the folder and any missing parents with `owner` (existing ones are left alone). Parents are
 * taken from the resolved path, so a dangling link in the image (/home -> /data/home) gets its target made.
 */
async function mkdirGuest(fs: GuestFs, guestPath: string, owner: Owner): Promise<void> {
  const path = await hostPath(fs, guestPath);
  if (await lstat(path).catch(() => undefined)) return;
  const parent = posix.dirname(`/${relative(fs.root, path)}`);
  if (parent !== '/') await mkdirGuest(fs, parent, owner);
  await mkdir(path);
  await chmod(path, owner.mode);
  await chown(path, fs.onDisk(owner.uid), fs.onDisk(owner.gid));
}

/** Puts a complete file at `path` (host ids) in one rename: the guest never sees it half-written or mis-owned. */
async function replaceFile(path: string, content: string, uid: number, gid: number, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.envbox-${randomBytes(4).toString('hex')}`);
  await writeFile(tmp, content, { flag: 'wx', mode: 0o600 });
  await chown(tmp, uid, gid);
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/** Replaces whatever is at the path (a symlink is replaced, never followed) with a new file. */
async function writeGuest(fs: GuestFs, guestPath: string, content: string, owner: Owner): Promise<void> {
  await mkdirGuest(fs, posix.dirname(guestPath), ROOT(0o755));
  await replaceFile(await hostPath(fs, guestPath, false), content, fs.onDisk(owner.uid), fs.onDisk(owner.gid), owner.mode);
}

/** A root-owned symlink at the guest path (whatever was there is replaced), e.g. a mask to /dev/null. */
async function symlinkGuest(fs: GuestFs, guestPath: string, target: string): Promise<void> {
  await mkdirGuest(fs, posix.dirname(guestPath), ROOT(0o755));
  const path = await hostPath(fs, guestPath, false);
  await rm(path, { force: true });
  await symlink(target, path);
  await lchown(path, fs.onDisk(0), fs.onDisk(0));
}

/** Rewrites an image file through `edit`, keeping its owner and mode (e.g. /etc/shadow root:shadow 0640). */
async function editGuest(fs: GuestFs, guestPath: string, edit: (text: string) => string, fallback: Owner): Promise<string> {
  const path = await hostPath(fs, guestPath);
  const stat = await lstat(path).catch(() => undefined);
  const old = stat?.isFile() ? stat : undefined;
  const next = edit(old ? await readFile(path, 'utf8') : '');
  await replaceFile(
    path,
    next,
    old?.uid ?? fs.onDisk(fallback.uid),
    old?.gid ?? fs.onDisk(fallback.gid),
    old ? old.mode & 0o7777 : fallback.mode,
  );
  return next;
}

const exists = async (fs: GuestFs, guestPath: string) => !!(await lstat(await hostPath(fs, guestPath)).catch(() => undefined));

/** Upstream nameservers the guest can use: the host's, or systemd-resolved's when the host only has its stub. */
export async function hostNameservers(): Promise<string[]> {
  for (const file of ['/etc/resolv.conf', '/run/systemd/resolve/resolv.conf']) {
    const found = upstreamNameservers(await readFile(file, 'utf8').catch(() => ''));
    if (found.length > 0) return found;
  }
  return [];
}

export interface GuestNetwork {
  address: string;
  gateway: string;
  nameservers: string[];
}

/** Everything the guest needs before its first boot: names, network, the user, sudo and sshd. */
export async function prepareGuest(
  fs: GuestFs,
  spec: GuestSpec,
  net: GuestNetwork,
  hostKey: { privateKey: string; publicKey: string },
): Promise<void> {
  const { user } = spec;
  await writeGuest(fs, '/etc/hostname', `${spec.hostname}\n`, ROOT(0o644));
  await writeGuest(fs, '/etc/hosts', hostsFile(spec.hostname, net.address), ROOT(0o644));
  await writeGuest(fs, '/etc/resolv.conf', resolvConf(spec.network.outbound, net.nameservers), ROOT(0o644));
  // Each env its own machine id: journald, D-Bus and DHCP clients key on it.
  await writeGuest(fs, '/etc/machine-id', `${randomBytes(16).toString('hex')}\n`, ROOT(0o444));
  if (await exists(fs, '/etc/systemd/network')) {
    await writeGuest(fs, '/etc/systemd/network/10-envbox-eth0.network', networkdUnit(net.address, net.gateway), ROOT(0o644));
  }
  if (await exists(fs, '/etc/network/interfaces')) await editGuest(fs, '/etc/network/interfaces', interfacesWithoutEth0, ROOT(0o644));

  const shell = (await exists(fs, '/bin/bash')) ? '/bin/bash' : '/bin/sh';
  await editGuest(fs, '/etc/passwd', (t) => passwdWithUser(t, user, shell), ROOT(0o644));
  const group = await editGuest(fs, '/etc/group', (t) => groupWithUser(t, user), ROOT(0o644));
  await editGuest(fs, '/etc/shadow', (t) => shadowWithUser(t, user), ROOT(0o640));
  if (await exists(fs, '/etc/gshadow')) await editGuest(fs, '/etc/gshadow', (t) => gshadowWithUser(t, user, group), ROOT(0o640));
  await writeGuest(fs, '/etc/sudoers.d/envbox', sudoersFor(user), ROOT(0o440));

  const mine = (mode: number): Owner => ({ uid: user.uid, gid: user.gid, mode });
  await mkdirGuest(fs, posix.dirname(user.home), ROOT(0o755));
  await mkdirGuest(fs, user.home, mine(0o755));
  const skel = await hostPath(fs, '/etc/skel');
  for (const entry of await readdir(skel, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isFile() || (await exists(fs, posix.join(user.home, entry.name)))) continue;
    await writeGuest(fs, posix.join(user.home, entry.name), await readFile(join(skel, entry.name), 'utf8'), mine(0o644));
  }
  await mkdirGuest(fs, posix.join(user.home, '.ssh'), mine(0o700));
  await writeGuest(fs, posix.join(user.home, '.ssh/authorized_keys'), `${user.authorizedKey.trim()}\n`, mine(0o600));

  // Remove any other host key the image kept so sshd can't offer one the host didn't pin.
  const sshDir = await hostPath(fs, '/etc/ssh');
  for (const name of await readdir(sshDir).catch(() => [] as string[])) {
    if (name.startsWith('ssh_host_')) await rm(join(sshDir, name), { force: true });
  }
  await writeGuest(fs, '/etc/ssh/ssh_host_ed25519_key', ensureNewline(hostKey.privateKey), ROOT(0o600));
  await writeGuest(fs, '/etc/ssh/ssh_host_ed25519_key.pub', ensureNewline(hostKey.publicKey), ROOT(0o644));
  await writeGuest(fs, SSHD_DROPIN_PATH, sshdDropIn(), ROOT(0o644));
  for (const name of CONTAINER_IDLE_GENERATORS) {
    if (await exists(fs, `/lib/systemd/system-generators/${name}`)) await symlinkGuest(fs, `/etc/systemd/system-generators/${name}`, '/dev/null');
  }
  for (const name of CONTAINER_IDLE_UNITS) {
    if (await exists(fs, `/lib/systemd/system/${name}`)) await symlinkGuest(fs, `/etc/systemd/system/${name}`, '/dev/null');
  }
  if (await exists(fs, '/lib/systemd/system/ssh.service')) {
    await writeGuest(fs, SSHD_UNIT_DROPIN_PATH, sshdUnitDropIn(), ROOT(0o644));
    await writeGuest(fs, NOLOGIN_TMPFILES_PATH, NOLOGIN_TMPFILES, ROOT(0o644));
    await writeGuest(fs, TMP_TMPFILES_PATH, TMP_TMPFILES, ROOT(0o644));
  }

  // Shared folders' mount points: LXC would create missing parents as root, leaving the user unable to
  // write next to the project; parents inside the home belong to the user.
  for (const folder of spec.folders) {
    const target = posix.normalize(folder.guest);
    const inHome = target.startsWith(`${posix.normalize(user.home)}/`);
    await mkdirGuest(fs, target, inHome ? mine(0o755) : ROOT(0o755));
  }
}

/**
 * The sshd host key: the one core generated and pins (spec.hostKey), else a fresh one whose public half
 * the machine record carries so it can still be pinned.
 */
export async function guestHostKey(spec: GuestSpec): Promise<{ privateKey: string; publicKey: string }> {
  if (spec.hostKey) return spec.hostKey;
  const comment = `root@${spec.hostname}`;
  const key = generateEd25519(comment);
  return { privateKey: key.privateKey, publicKey: `${key.publicKey} ${comment}\n` };
}

const ensureNewline = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);
