import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { posix } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { checkGuestUser } from '../lxc/idmap.js';
import type { GuestSpec, GuestUser, SharedFolder } from '../provider.js';

/**
 * The instance envbox asks the daemon for, as pure functions of the GuestSpec: name, limits, an
 * isolated idmap, the project folders as disk devices, and sshd published through a proxy device
 * (the guest's own address is never assumed to be reachable from this host).
 */

export type Devices = Record<string, Record<string, string>>;

export interface InstanceBody {
  name: string;
  type: 'container';
  source: { type: 'image'; fingerprint: string };
  profiles: string[];
  config: Record<string, string>;
  devices: Devices;
}

/** How shared folders keep one owner on both sides (see folderSharing). */
export type FolderSharing = { mode: 'none' } | { mode: 'shift' } | { mode: 'raw.idmap'; rawIdmap: string };

export const SSH_DEVICE = 'envbox-ssh';
export const folderDevice = (index: number) => `envbox-folder-${index}`;
/** Ports envbox publishes sshd on, on the daemon's host: below Linux's ephemeral range so outgoing connections don't take them. */
export const SSH_PORTS = { from: 20000, to: 29999 } as const;

/**
 * The instance name: unique per env and per client host (several machines share a remote daemon, and
 * the env id only hashes the Envfile's path), and a valid Incus name (a host name of at most 63).
 */
export function instanceName(id: string, clientHost: string): string {
  const name = id.replace(/-[0-9a-f]{8}$/, '').replace(/[^a-z0-9-]/gi, '-').slice(0, 40).replace(/-+$/, '');
  const hash = createHash('sha256').update(`${clientHost}\0${id}`).digest('hex').slice(0, 8);
  return `envbox-${name || 'env'}-${hash}`;
}

/**
 * shift=true maps a host id to the same guest id, so it is enough when the guest user has the host
 * owner's uid. Otherwise (or when the daemon can't shift) raw.idmap maps the owner's ids to the guest
 * user's. Host root is never mapped into a guest: a root-owned project can't be shared this way.
 */
export function folderSharing(user: GuestUser, folders: SharedFolder[], idmappedMounts: boolean): FolderSharing {
  if (folders.length === 0) return { mode: 'none' };
  const hostUid = user.hostUid ?? user.uid;
  const hostGid = user.hostGid ?? user.gid;
  if (hostUid === 0) {
    throw new EnvboxError('INCUS_ROOT_FOLDER', `${folders[0]!.host} belongs to root, and Incus would have to map host root into the guest to share it`, {
      hint: `give the project to a regular user (chown -R 1000:1000 ${folders[0]!.host}) and run env as that user, or set folders: [] in the Envfile`,
    });
  }
  if (idmappedMounts && hostUid === user.uid) return { mode: 'shift' };
  const lines = [`uid ${hostUid} ${user.uid}`];
  if (hostGid !== 0) lines.push(`gid ${hostGid} ${user.gid}`);
  return { mode: 'raw.idmap', rawIdmap: lines.join('\n') };
}

/** `tcp:127.0.0.1:20022` / `tcp:[::1]:20022` */
export function listenAddress(address: string, port: number): string {
  return `tcp:${isIPv6(address) ? `[${address}]` : address}:${port}`;
}

/** A port in SSH_PORTS that no other instance on the daemon publishes; `random` is in [0, 1). */
export function pickSshPort(taken: Set<number>, random: () => number = Math.random): number | undefined {
  const size = SSH_PORTS.to - SSH_PORTS.from + 1;
  const start = Math.floor(random() * size);
  for (let i = 0; i < size; i++) {
    const port = SSH_PORTS.from + ((start + i) % size);
    if (!taken.has(port)) return port;
  }
  return undefined;
}

/** Ports the daemon's instances already publish with proxy devices (from `/1.0/instances?recursion=1`). */
export function publishedPorts(instances: { devices?: Devices; expanded_devices?: Devices }[]): Set<number> {
  const ports = new Set<number>();
  for (const instance of instances) {
    for (const device of Object.values(instance.expanded_devices ?? instance.devices ?? {})) {
      const port = device.type === 'proxy' ? /:(\d+)$/.exec(device.listen ?? '')?.[1] : undefined;
      if (port) ports.add(Number(port));
    }
  }
  return ports;
}

export interface InstancePlan {
  name: string;
  fingerprint: string;
  sharing: FolderSharing;
  ssh: { address: string; port: number };
  /** NIC devices of the profile, replaced by nothing when the env has no outbound network. */
  profileNics: string[];
  clientHost: string;
}

export function instanceBody(spec: GuestSpec, plan: InstancePlan): InstanceBody {
  checkGuestUser(spec.user);
  const config: Record<string, string> = {
    // Each instance its own 65536 host ids: a guest escaping its namespace owns nothing of another's.
    'security.idmap.isolated': 'true',
    'user.envbox.id': spec.id,
    'user.envbox.host': plan.clientHost,
  };
  if (spec.cpus !== undefined) config['limits.cpu'] = String(spec.cpus);
  if (spec.memoryBytes !== undefined) config['limits.memory'] = `${Math.floor(spec.memoryBytes / 2 ** 20)}MiB`;
  if (plan.sharing.mode === 'raw.idmap') config['raw.idmap'] = plan.sharing.rawIdmap;

  const devices: Devices = {
    [SSH_DEVICE]: { type: 'proxy', bind: 'host', listen: listenAddress(plan.ssh.address, plan.ssh.port), connect: 'tcp:127.0.0.1:22' },
  };
  spec.folders.forEach((folder, i) => {
    if (!posix.isAbsolute(folder.guest) || !posix.isAbsolute(folder.host)) {
      throw new EnvboxError('INCUS_FOLDER', `folder ${folder.host} -> ${folder.guest}: both paths must be absolute`);
    }
    devices[folderDevice(i)] = { type: 'disk', source: folder.host, path: posix.normalize(folder.guest).replace(/(.)\/+$/, '$1'), ...(plan.sharing.mode === 'shift' ? { shift: 'true' } : {}) };
  });
  // No NIC at all without outbound: nothing the guest sends can leave, whatever the daemon's network does.
  if (!spec.network.outbound) for (const nic of plan.profileNics) devices[nic] = { type: 'none' };
  return { name: plan.name, type: 'container', source: { type: 'image', fingerprint: plan.fingerprint }, profiles: ['default'], config, devices };
}
