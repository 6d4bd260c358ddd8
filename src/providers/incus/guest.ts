import { posix } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  groupWithUser,
  gshadowWithUser,
  hostsFile,
  passwdWithUser,
  resolvConf,
  shadowWithUser,
  SSHD_DROPIN_PATH,
  sshdDropIn,
  sudoersFor,
} from '../lxc/guestfiles.js';
import type { GuestSpec } from '../provider.js';
import { root, type InstanceFiles, type Owner } from './files.js';

/**
 * What a new instance gets before its first boot, pushed through the file API: its names, DNS, the
 * guest user with the env's key, sudo, and sshd with only the host key envbox pinned. The file texts
 * are the LXC provider's (lxc/guestfiles.ts); only how they get into the guest differs.
 */

export interface GuestNetwork {
  outbound: boolean;
  /** Nameservers the guest can use when it has outbound network. */
  nameservers: string[];
}

export const NETWORKD_UNIT = '/etc/systemd/network/10-envbox-eth0.network';

/** The daemon hands out addresses by DHCP on its networks; the image's networkd takes one. */
export function networkdDhcpUnit(): string {
  return ['# envbox: eth0 gets its address from the daemon\'s DHCP server', '[Match]', 'Name=eth0', '', '[Network]', 'DHCP=ipv4', 'IPv6AcceptRA=no', ''].join('\n');
}

const ensureNewline = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);

/** Rewrites a file through `edit`, keeping the owner and mode the image gave it. */
async function edit(files: InstanceFiles, path: string, change: (text: string) => string, fallback: Owner): Promise<string> {
  const file = await files.read(path);
  const next = change(file?.type === 'file' ? file.content : '');
  await files.write(path, next, file?.type === 'file' ? file : fallback);
  return next;
}

async function enableNetworkd(files: InstanceFiles): Promise<void> {
  await files.mkdirp('/etc/systemd/network', root(0o755));
  await files.write(NETWORKD_UNIT, networkdDhcpUnit(), root(0o644));
  for (const [wants, unit] of [
    ['multi-user.target.wants', 'systemd-networkd.service'],
    ['sockets.target.wants', 'systemd-networkd.socket'],
  ] as const) {
    await files.mkdirp(`/etc/systemd/system/${wants}`, root(0o755));
    if (!(await files.stat(`/etc/systemd/system/${wants}/${unit}`))) await files.symlink(`/etc/systemd/system/${wants}/${unit}`, `/lib/systemd/system/${unit}`);
  }
}

/** Everything independent runs at once: each file call is a round trip to the daemon. */
export async function prepareGuest(files: InstanceFiles, spec: GuestSpec, net: GuestNetwork, hostKey: { privateKey: string; publicKey: string }): Promise<void> {
  const { user } = spec;
  const mine = (mode: number): Owner => ({ uid: user.uid, gid: user.gid, mode });
  const [bash, sshEntries, skel] = await Promise.all([files.stat('/bin/bash'), files.list('/etc/ssh'), files.list('/etc/skel')]);
  const shell = bash ? '/bin/bash' : '/bin/sh';

  // Any host key the image kept goes, so sshd can't offer one the host didn't pin.
  await Promise.all(sshEntries.filter((n) => n.startsWith('ssh_host_')).map((n) => files.remove(`/etc/ssh/${n}`)));
  await Promise.all([
    files.write('/etc/hostname', `${spec.hostname}\n`, root(0o644)),
    files.write('/etc/hosts', hostsFile(spec.hostname, '127.0.1.1'), root(0o644)),
    // resolv.conf may be a link into /run (resolved): replace the link, don't write through it.
    files.remove('/etc/resolv.conf').then(() => files.write('/etc/resolv.conf', resolvConf(net.outbound, net.nameservers), root(0o644))),
    // Each env its own machine id: journald, D-Bus and DHCP clients key on it.
    files.write('/etc/machine-id', `${randomBytes(16).toString('hex')}\n`, root(0o444)),
    files.mkdirp('/etc/sudoers.d', root(0o755)).then(() => files.write('/etc/sudoers.d/envbox', sudoersFor(user), root(0o440))),
    files.write('/etc/ssh/ssh_host_ed25519_key', ensureNewline(hostKey.privateKey), root(0o600)),
    files.write('/etc/ssh/ssh_host_ed25519_key.pub', ensureNewline(hostKey.publicKey), root(0o644)),
    files.mkdirp(posix.dirname(SSHD_DROPIN_PATH), root(0o755)).then(() => files.write(SSHD_DROPIN_PATH, sshdDropIn(), root(0o644))),
    edit(files, '/etc/passwd', (t) => passwdWithUser(t, user, shell), root(0o644)),
    edit(files, '/etc/shadow', (t) => shadowWithUser(t, user), root(0o640)),
    edit(files, '/etc/group', (t) => groupWithUser(t, user), root(0o644)).then(async (group) => {
      if (await files.stat('/etc/gshadow')) await edit(files, '/etc/gshadow', (t) => gshadowWithUser(t, user, group), root(0o640));
    }),
    net.outbound ? enableNetworkd(files) : Promise.resolve(),
  ]);

  await files.mkdirp(user.home, mine(0o755));
  await Promise.all([
    ...skel.map(async (name) => {
      const [source, existing] = await Promise.all([files.read(`/etc/skel/${name}`), files.stat(posix.join(user.home, name))]);
      if (source?.type === 'file' && !existing) await files.write(posix.join(user.home, name), source.content, mine(0o644));
    }),
    files.mkdirp(posix.join(user.home, '.ssh'), mine(0o700)).then(() => files.write(posix.join(user.home, '.ssh/authorized_keys'), `${user.authorizedKey.trim()}\n`, mine(0o600))),
    // Mount points: the daemon would make missing ones as root, leaving the user unable to write next
    // to the project; inside the home they and their parents belong to the user.
    // One after another: two folders may share parents that don't exist yet.
    (async () => {
      for (const folder of spec.folders) {
        const target = posix.normalize(folder.guest);
        const owner = target.startsWith(`${posix.normalize(user.home)}/`) ? mine(0o755) : root(0o755);
        await files.mkdirp(target, owner, owner);
      }
    })(),
  ]);
}
