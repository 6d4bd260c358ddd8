import { existsSync } from 'node:fs';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { run } from '../../util/exec.js';
import type { Progress } from '../../util/progress.js';
import type { GuestSpec, GuestState, MachineRecord, Provider } from '../provider.js';
import { ensureNetwork, leaseAddress, releaseNetwork, setOutbound } from './bridge.js';
import { lxcConfig } from './config.js';
import { checkHost, prepareHost } from './hostcheck.js';
import { guestFacts, hostFacts, removeCgroups } from './hostfacts.js';
import { releaseSlot, reserveSlot, withHostLock } from './hoststate.js';
import { checkGuestUser, slotBase } from './idmap.js';
import { asLxcMachine, envPaths, RUN_DIR, type EnvPaths, type LxcMachine } from './layout.js';
import { lxcFreeze, lxcInitPid, lxcStart, lxcState, lxcStop } from './lxc.js';
import { vethName } from './net.js';
import { guestHostKey, hostNameservers, prepareGuest } from './prepare.js';
import { checkCopyModeFolders, chooseMode, createData, mountEnv, removeData, unmountEnv } from './rootfs.js';

/**
 * `provider: container`: LXC system containers driven with lxc-* commands and configs envbox writes.
 * Unprivileged, one id range per env, copy-on-write rootfs, on envbox's own bridge. See rootfs.ts for the
 * filesystem design and idmap.ts for the id layout.
 */

async function writeConfig(spec: GuestSpec, machine: LxcMachine, paths: EnvPaths): Promise<void> {
  const text = lxcConfig(spec, machine, paths, await hostFacts(), await guestFacts(paths.rootfs));
  await mkdir(paths.configDir, { recursive: true, mode: 0o711 });
  await writeFile(paths.config, text, { mode: 0o644 });
}

/** LXC removes the veth when the container stops; after a crash envbox does. */
async function removeStaleVeth(veth: string): Promise<void> {
  if ((await run('ip', ['link', 'show', 'dev', veth])).code === 0) await run('ip', ['link', 'del', veth]);
}

async function releaseReservations(id: string): Promise<void> {
  await releaseNetwork(id);
  await releaseSlot(id);
}

/** Envs this process has just created: their network is in place already, and no veth of theirs can be left. */
const createdHere = new Set<string>();

async function create(spec: GuestSpec, progress: Progress): Promise<MachineRecord> {
  const paths = envPaths(spec);
  checkGuestUser(spec.user);
  if (existsSync(paths.config) || existsSync(paths.data)) {
    throw new EnvboxError('ENV_EXISTS', `env ${spec.id} already has a container`, { hint: 'env destroy first, or env up to start it' });
  }
  const mode = await chooseMode(progress);
  if (mode === 'copy') checkCopyModeFolders(spec);
  const undo: (() => Promise<unknown>)[] = [];
  try {
    progress.update('reserving an id range and an address');
    undo.push(() => withHostLock(() => releaseReservations(spec.id)));
    const { slot, address, network, table } = await withHostLock(async () => {
      const { state, probe } = await ensureNetwork(spec.network.outbound);
      return { slot: await reserveSlot(spec.id), address: await leaseAddress(state, spec.id), network: state, table: probe.table };
    });
    const hostKey = await guestHostKey(spec);
    const machine: LxcMachine = {
      address,
      provider: 'lxc',
      bridge: network.bridge,
      gateway: network.gateway,
      veth: vethName(spec.id),
      idmapSlot: slot,
      idmapBase: slotBase(slot),
      rootfsMode: mode,
      image: spec.rootfs,
      hostPublicKey: hostKey.publicKey.trim(),
    };
    // Rendering first rejects bad values (newlines, relative guest folders) before anything is on disk.
    lxcConfig(spec, machine, paths, await hostFacts(), await guestFacts(spec.rootfs));

    progress.update(mode === 'overlay' ? 'layering the rootfs' : 'copying the image');
    undo.push(() => removeData(paths));
    await createData(spec, paths, mode, machine.idmapBase, progress);
    undo.push(() => unmountEnv(paths));
    await mountEnv(spec, machine, paths);

    progress.update('writing the guest user, network and sshd setup');
    const onDisk = mode === 'overlay' ? (id: number) => machine.idmapBase + id : (id: number) => id;
    const nameservers = spec.network.outbound ? await hostNameservers() : [];
    await prepareGuest({ root: paths.rootfs, onDisk }, spec, { address, gateway: network.gateway, nameservers }, hostKey);

    progress.update('writing the container config');
    undo.push(() => rm(paths.configDir, { recursive: true, force: true }));
    await writeConfig(spec, machine, paths);
    await setOutbound(machine.bridge, address, spec.network.outbound, table);
    createdHere.add(spec.id);
    return machine;
  } catch (err) {
    for (const step of undo.reverse()) await step().catch(() => {});
    throw err;
  }
}

async function start(spec: GuestSpec, record: MachineRecord, progress: Progress): Promise<void> {
  const machine = asLxcMachine(record);
  const paths = envPaths(spec);
  const state = await lxcState(paths, spec.id);
  if (state === 'RUNNING') return;
  if (state === 'FROZEN') return lxcFreeze(paths, spec.id, false);
  progress.update('preparing the network and mounting the rootfs');
  // The two don't depend on each other: done side by side (each is a few commands), both finished before
  // either's failure is reported, so nothing is still running behind the error.
  const network = async () => {
    // After a reboot the bridge, the table and everything under /run are gone: put them back.
    const { changes, probe } = await withHostLock(() => ensureNetwork(spec.network.outbound));
    for (const line of changes) progress.log(line);
    await setOutbound(machine.bridge, machine.address, spec.network.outbound, probe.table);
    // A veth left by a container that died without LXC cleaning up would make lxc-start fail.
    if (probe.links.has(machine.veth)) await run('ip', ['link', 'del', machine.veth]);
  };
  // The first start of a container this process has just created (env up of a new env) finds its network as
  // create left it.
  const fresh = createdHere.delete(spec.id);
  const [net, mounts] = await Promise.allSettled([fresh ? undefined : network(), mountEnv(spec, machine, paths)]);
  if (net.status === 'rejected') throw net.reason;
  if (mounts.status === 'rejected') throw mounts.reason;
  await writeConfig(spec, machine, paths);
  progress.update('starting the container');
  // lxc-start has set up eth0 with the env's address before it returns (a failure there fails the start).
  await lxcStart(paths, spec.id);
}

async function stop(spec: GuestSpec, _machine: MachineRecord, opts: { timeoutMs: number; force: boolean }): Promise<void> {
  const paths = envPaths(spec);
  const state = await lxcState(paths, spec.id);
  if (state === 'FROZEN') await lxcFreeze(paths, spec.id, false);
  if (state && state !== 'STOPPED') await lxcStop(paths, spec.id, opts.force ? 0 : Math.max(1, Math.ceil(opts.timeoutMs / 1000)));
  await removeStaleVeth(vethName(spec.id));
  await unmountEnv(paths);
}

async function freezeOrThaw(spec: GuestSpec, freeze: boolean): Promise<void> {
  const paths = envPaths(spec);
  const state = await lxcState(paths, spec.id);
  if (state === (freeze ? 'FROZEN' : 'RUNNING')) return;
  if (state !== 'RUNNING' && state !== 'FROZEN') {
    throw new EnvboxError('NOT_RUNNING', `env ${spec.id} is not running`, { hint: 'env up starts it' });
  }
  await lxcFreeze(paths, spec.id, freeze);
}

/** Works from the env id alone (the record may be lost after a failed create): every name derives from it. */
async function destroy(spec: GuestSpec, _machine: MachineRecord | undefined): Promise<void> {
  const paths = envPaths(spec);
  const state = await lxcState(paths, spec.id);
  if (state === 'FROZEN') await lxcFreeze(paths, spec.id, false);
  if (state && state !== 'STOPPED') await lxcStop(paths, spec.id, 0);
  await unmountEnv(paths);
  await rm(paths.configDir, { recursive: true, force: true });
  await removeData(paths);
  await removeCgroups(spec.id);
  await removeStaleVeth(vethName(spec.id));
  await withHostLock(() => releaseReservations(spec.id));
  // Leave /run/envbox as tidy as it was before the first env.
  for (const dir of [paths.lxcpath, join(RUN_DIR, 'mnt'), RUN_DIR]) await rmdir(dir).catch(() => {});
}

async function state(spec: GuestSpec): Promise<GuestState> {
  const paths = envPaths(spec);
  switch (await lxcState(paths, spec.id)) {
    case 'RUNNING':
    case 'STARTING':
    case 'STOPPING':
    case 'THAWED':
      return 'running';
    case 'FROZEN':
    case 'FREEZING':
      return 'frozen';
    case undefined:
      // The config lives under /run: after a reboot only the env's data says it exists.
      return existsSync(paths.data) ? 'stopped' : 'absent';
    default:
      return 'stopped';
  }
}

export const lxcProvider: Provider = {
  name: 'container',
  capabilities: { suspend: true, snapshots: false, folders: 'mount', nativeInotify: true, netns: true },
  checkHost,
  prepareHost,
  create,
  start,
  stop,
  freeze: (spec) => freezeOrThaw(spec, true),
  unfreeze: (spec) => freezeOrThaw(spec, false),
  destroy,
  state,
  netnsPid: async (spec) => lxcInitPid(envPaths(spec), spec.id),
};
