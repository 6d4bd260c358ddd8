import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { EnvboxError, UsageError } from '../../util/errors.js';
import type { Progress } from '../../util/progress.js';
import { guestHostKey, hostNameservers } from '../lxc/prepare.js';
import type { GuestSpec, GuestState, MachineRecord, Provider } from '../provider.js';
import type { Flavor } from './api.js';
import { folderSharing, instanceBody, instanceName, pickSshPort, publishedPorts, type Devices } from './config.js';
import { daemonRef, isLocalSetting, withDaemon, type Daemon } from './daemon.js';
import { InstanceFiles } from './files.js';
import { prepareGuest } from './guest.js';
import { checkHost, idmappedMounts, prepareHost, type ServerInfo } from './hostcheck.js';
import { cachedImageOf, ensureDaemonImage, imageAlias, releaseDaemonImage, type DaemonImage } from './image.js';
import { asIncusMachine, placementOf, removePlacement, withImageLock, writePlacement, type IncusMachine } from './machine.js';
import { freezeInstance, guestState, instanceStatus, startInstance, stopInstance } from './power.js';

/**
 * `provider: incus` / `lxd`: system containers on an Incus or LXD daemon, local (unix socket) or remote
 * (HTTPS, `env remote add`). envbox's own image is imported into the daemon; the guest is prepared
 * through the file API before first boot; sshd is published through a proxy device on the daemon's
 * host, so nothing assumes the guest's own address is reachable from here.
 */

const instancePath = (name: string) => `/1.0/instances/${encodeURIComponent(name)}`;

/** Whether a local port can be bound now (a remote daemon's host can't be asked). */
function bindable(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: address, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

async function sshPort(daemon: Daemon, instances: { devices?: Devices; expanded_devices?: Devices }[]): Promise<number> {
  const taken = publishedPorts(instances);
  for (let tries = 0; tries < 50; tries++) {
    const port = pickSshPort(taken);
    if (port === undefined) break;
    if (!daemon.local || (await bindable(daemon.listenAddress, port))) return port;
    taken.add(port);
  }
  throw new EnvboxError('INCUS_NO_PORT', `no free port in 20000-29999 on ${daemon.listenAddress} to publish the guest's sshd`, { hint: 'destroy envs you no longer need' });
}

/** The nameservers a guest with outbound network uses: the daemon network's own DNS, else (locally) the host's. */
async function guestNameservers(daemon: Daemon, profileDevices: Devices): Promise<string[]> {
  const nic = Object.values(profileDevices).find((d) => d.type === 'nic' && d.network);
  const network = nic && (await daemon.api.find<{ managed: boolean; config: Record<string, string> }>(`/1.0/networks/${encodeURIComponent(nic.network!)}`, 'reading the network'));
  const gateway = network?.managed ? network.config['ipv4.address']?.split('/')[0] : undefined;
  if (gateway && gateway !== 'none') return [gateway];
  return daemon.local ? hostNameservers() : [];
}

async function create(flavor: Flavor, remote: string | undefined, spec: GuestSpec, progress: Progress): Promise<MachineRecord> {
  const ref = await daemonRef(flavor, remote);
  if ('remote' in ref && spec.folders.length > 0) {
    throw new UsageError('REMOTE_FOLDERS', `a remote daemon can't mount this host's folders (${spec.folders.map((f) => f.host).join(', ')})`, {
      hint: 'drop mode: mount from those folders: on a remote daemon they default to mode: sync, a copy in the guest that envbox keeps up to date',
    });
  }
  return withDaemon(flavor, ref, async (daemon) => {
    const { api } = daemon;
    const info = await api.get<ServerInfo>('/1.0', 'answering');
    if (info.auth !== 'trusted') throw api.error(403, 'this client is not trusted', 'creating an env');
    // Incus and LXD name their file headers differently: the wrong one would silently lose file owners.
    const server = info.environment?.server;
    if (server && server !== api.flavor) {
      throw new UsageError('INCUS_FLAVOR', `${daemon.label} is ${server === 'lxd' ? 'LXD' : 'Incus'}, not ${api.product}`, { hint: `use provider: ${server} in the Envfile` });
    }
    const sharing = folderSharing(spec.user, spec.folders, idmappedMounts(info));
    const name = instanceName(spec.id, hostname());
    const existing = await api.find<{ config: Record<string, string> }>(instancePath(name), `looking up ${name}`);
    if (existing && existing.config['user.envbox.id'] !== spec.id) {
      throw new EnvboxError('ENV_EXISTS', `${daemon.label} already has an instance ${name} that is not this env's`, { hint: `remove it (${api.flavor === 'incus' ? 'incus' : 'lxc'} delete --force ${name}) or rename the env` });
    }
    if (existing) {
      // Core creates only envs it has no record of: this is what an env up killed half-way left behind.
      progress.log(`removing ${name}, left by an env up that did not finish`);
      await stopInstance(api, name, { timeoutMs: 0, force: true });
      await api.call('DELETE', instancePath(name), `removing ${name}`);
    }
    const [image, hostKey, profile, instances] = await Promise.all([
      cachedImageOf(spec.rootfs),
      guestHostKey(spec),
      api.get<{ devices: Devices }>('/1.0/profiles/default', 'reading the default profile'),
      api.get<{ devices?: Devices; expanded_devices?: Devices }[]>('/1.0/instances?recursion=1', 'listing instances'),
    ]);
    const port = await sshPort(daemon, instances);
    const nameservers = spec.network.outbound ? await guestNameservers(daemon, profile.devices) : [];
    await writePlacement(spec, { daemon: ref, instance: name });

    let daemonImage: DaemonImage | undefined;
    try {
      await withImageLock(ref, imageAlias(image.key), async () => {
        progress.update(`looking for ${image.name} in ${api.product}`);
        daemonImage = await ensureDaemonImage(api, image, progress);
        const body = instanceBody(spec, {
          name,
          fingerprint: daemonImage.fingerprint,
          sharing,
          ssh: { address: daemon.listenAddress, port },
          profileNics: Object.entries(profile.devices).filter(([, d]) => d.type === 'nic').map(([key]) => key),
          clientHost: hostname(),
        });
        progress.update(`creating instance ${name}`);
        await api.call('POST', '/1.0/instances', `creating instance ${name}`, body, progress);
      });
      progress.update('writing the guest user and sshd setup');
      await prepareGuest(new InstanceFiles(api, name), spec, { outbound: spec.network.outbound, nameservers }, hostKey);
      const machine: IncusMachine = {
        provider: flavor,
        address: daemon.listenAddress,
        sshPort: port,
        daemon: ref,
        instance: name,
        image: { fingerprint: daemonImage!.fingerprint, alias: daemonImage!.alias },
        folders: sharing.mode,
        hostPublicKey: hostKey.publicKey.trim(),
      };
      return machine;
    } catch (err) {
      // The name was free before: whatever has it now is this attempt's (a failed operation may still leave it).
      if (await instanceStatus(api, name).catch(() => undefined)) await api.call('DELETE', instancePath(name), `removing ${name}`).catch(() => {});
      if (daemonImage) await withImageLock(ref, daemonImage.alias, () => releaseDaemonImage(api, daemonImage!.fingerprint)).catch(() => {});
      await removePlacement(spec);
      throw err;
    }
  });
}

/** Runs `fn` on the env's instance; undefined when the env never got one. */
async function onInstance<T>(flavor: Flavor, spec: GuestSpec, machine: MachineRecord | undefined, fn: (daemon: Daemon, name: string) => Promise<T>): Promise<T | undefined> {
  const placement = await placementOf(spec, machine);
  if (!placement) return undefined;
  return withDaemon(flavor, placement.daemon, (daemon) => fn(daemon, placement.instance));
}

/** Like onInstance, for actions that need the instance to exist. */
async function onCreated(flavor: Flavor, spec: GuestSpec, machine: MachineRecord, fn: (api: Daemon['api'], name: string) => Promise<void>): Promise<void> {
  const placement = await placementOf(spec, machine);
  if (!placement) throw new EnvboxError('ENV_NOT_CREATED', 'this env has no instance', { hint: 'env up creates it' });
  await withDaemon(flavor, placement.daemon, ({ api }) => fn(api, placement.instance));
}

async function destroy(flavor: Flavor, spec: GuestSpec, machine: MachineRecord | undefined): Promise<void> {
  const recorded = machine ? asIncusMachine(machine) : undefined;
  await onInstance(flavor, spec, machine, async ({ api, ref }, name) => {
    const instance = await api.find<{ config: Record<string, string> }>(instancePath(name), `looking up ${name}`);
    if (instance) {
      await stopInstance(api, name, { timeoutMs: 0, force: true });
      await api.call('DELETE', instancePath(name), `removing ${name}`);
    }
    // The daemon copies image properties into the instance as image.*: envbox's key names the lock.
    const fingerprint = recorded?.image.fingerprint ?? instance?.config['volatile.base_image'];
    const key = recorded?.image.alias ?? (instance?.config['image.envbox.key'] && imageAlias(instance.config['image.envbox.key']));
    if (fingerprint && key) await withImageLock(ref, key, () => releaseDaemonImage(api, fingerprint));
  });
  await removePlacement(spec);
}

async function state(flavor: Flavor, spec: GuestSpec): Promise<GuestState> {
  return (await onInstance(flavor, spec, undefined, async ({ api }, name) => guestState(await instanceStatus(api, name)))) ?? 'absent';
}

/** The provider for one daemon flavor and the Envfile's `remote:` (unset: the local daemon). */
export function incusProvider(flavor: Flavor, remote?: string): Provider {
  const local = isLocalSetting(remote);
  return {
    name: flavor,
    capabilities: { suspend: true, snapshots: false, folders: local ? 'mount' : 'sync', nativeInotify: local, netns: false },
    checkHost: () => checkHost(flavor, remote),
    prepareHost: () => prepareHost(flavor, remote),
    create: (spec, progress) => create(flavor, remote, spec, progress),
    start: (spec, machine, progress) => onCreated(flavor, spec, machine, (api, name) => startInstance(api, spec, name, progress)),
    stop: (spec, machine, opts) => onCreated(flavor, spec, machine, (api, name) => stopInstance(api, name, opts)),
    freeze: (spec, machine) => onCreated(flavor, spec, machine, (api, name) => freezeInstance(api, name, true)),
    unfreeze: (spec, machine) => onCreated(flavor, spec, machine, (api, name) => freezeInstance(api, name, false)),
    destroy: (spec, machine) => destroy(flavor, spec, machine),
    state: (spec) => state(flavor, spec),
  };
}
