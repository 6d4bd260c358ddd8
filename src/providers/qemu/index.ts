import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { cpus as hostCpus } from 'node:os';
import { basename, dirname } from 'node:path';
import { ensureVmImage, readImage, readVmImage, type VmImage } from '../../images/index.js';
import { EnvboxError } from '../../util/errors.js';
import { runOk } from '../../util/exec.js';
import type { Progress } from '../../util/progress.js';
import { formatSize } from '../../util/size.js';
import { guestHostKey } from '../lxc/prepare.js';
import { mountPoints } from '../lxc/rootfs.js';
import type { GuestSpec, GuestState, MachineRecord, Provider } from '../provider.js';
import { chooseAccel, type AccelWanted } from './accel.js';
import { checkHost, prepareHost } from './hostcheck.js';
import { asQemuMachine, SLIRP, vmPaths, type QemuMachine, type VmPaths } from './layout.js';
import { consoleOffset, kill, launch, qemuPid, shutdown, waitForSshd } from './machine.js';
import { releasePort, reservePort } from './ports.js';
import { withQmp } from './qmp.js';
import { writeBootSeed, writeFirstBootSeed } from './seed.js';
import { mountFolders, unmountFolders } from './shares.js';

/**
 * `provider: vm`: full VMs on QEMU, direct kernel boot, KVM when it works here and TCG otherwise (see
 * accel.ts), user-mode networking with sshd forwarded to a local port, shared folders over 9p (shares.ts)
 * and the env's files applied at first boot from a seed share (seed.ts). Images come from the same
 * recipes as containers (images/vm.ts).
 */

const DEFAULT_MEMORY = 2 * 2 ** 30;
const DEFAULT_DISK = 20 * 2 ** 30;
/** How long a boot may take to reach sshd: emulation on a busy 2-core host is slow. */
const BOOT_TIMEOUT_MS = { kvm: 120_000, tcg: 360_000 };

/** The Envfile's VM keys; core passes them in the spec (`accel`, `diskBytes`) once it knows about them. */
function vmOptions(spec: GuestSpec): { accel: AccelWanted; diskBytes?: number } {
  return { accel: spec.accel ?? 'auto', diskBytes: spec.diskBytes };
}

/** The container image core ensured (spec.rootfs is `<images>/<key>/rootfs`): the VM image is built from its recipe. */
async function vmImageFor(spec: GuestSpec, progress: Progress): Promise<VmImage> {
  const base = await readImage(basename(dirname(spec.rootfs)));
  if (!base) {
    throw new EnvboxError('IMAGE_GONE', `the image this env is made from is not in the cache (${spec.rootfs})`, { hint: 'run env up again' });
  }
  return ensureVmImage(base, progress);
}

async function create(spec: GuestSpec, progress: Progress): Promise<MachineRecord> {
  const paths = vmPaths(spec);
  if (existsSync(paths.disk) || (await qemuPid(paths))) {
    throw new EnvboxError('ENV_EXISTS', `env ${spec.id} already has a VM`, { hint: 'env destroy first, or env up to start it' });
  }
  const image = await vmImageFor(spec, progress);
  const options = vmOptions(spec);
  progress.update('choosing KVM or TCG');
  const accel = await chooseAccel(options.accel, image.kernel);
  const undo: (() => Promise<unknown>)[] = [];
  try {
    undo.push(() => releasePort(spec.id));
    const sshPort = await reservePort(spec.id);
    undo.push(() => rm(paths.dir, { recursive: true, force: true }));
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    const diskBytes = Math.max(options.diskBytes ?? DEFAULT_DISK, image.diskBytes);
    progress.update(`creating the disk (${formatSize(diskBytes)}, copy-on-write on the image)`);
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image.disk, '-F', 'raw', paths.disk, String(diskBytes)], { code: 'VM_DISK' });
    progress.update('writing the guest user, network and sshd setup');
    const hostKey = await guestHostKey(spec);
    await writeFirstBootSeed(spec, image, paths, hostKey);
    const machine: QemuMachine = {
      provider: 'qemu',
      address: '127.0.0.1',
      sshPort,
      guestAddress: SLIRP.guest,
      image: { key: image.key, dir: image.dir },
      diskBytes,
      accel,
      hostPublicKey: hostKey.publicKey.trim(),
    };
    progress.log(`VM: ${accel.kind.toUpperCase()} (${accel.reason}), sshd on 127.0.0.1:${sshPort}`);
    return machine;
  } catch (err) {
    for (const step of undo.reverse()) await step().catch(() => {});
    throw err;
  }
}

async function start(spec: GuestSpec, record: MachineRecord, progress: Progress): Promise<void> {
  const machine = asQemuMachine(record);
  const paths = vmPaths(spec);
  const current = await state(spec);
  if (current === 'running') return;
  if (current === 'frozen') return withQmp(paths.qmp, async (qmp) => void (await qmp.execute('cont')));
  const image = await readVmImage(machine.image.key);
  if (!image) {
    throw new EnvboxError('IMAGE_GONE', `the VM image this env's disk is built on is gone (${machine.image.dir})`, {
      hint: 'env destroy, then env up (the env is rebuilt from the current image)',
    });
  }
  const accel = await chooseAccel(vmOptions(spec).accel, image.kernel);
  await writeBootSeed(paths, spec.folders);
  progress.update('sharing folders');
  const folders = await mountFolders(spec.folders, spec.user, paths, progress);
  try {
    const from = await consoleOffset(paths);
    progress.update(`starting QEMU (${accel.kind.toUpperCase()})`);
    await launch(
      {
        id: spec.id,
        accel: accel.kind,
        cpus: spec.cpus ?? Math.min(2, hostCpus().length),
        memoryBytes: spec.memoryBytes ?? DEFAULT_MEMORY,
        kernel: image.kernel,
        initrd: image.initrd,
        disk: paths.disk,
        sshPort: machine.sshPort,
        outbound: spec.network.outbound,
        seed: paths.seed,
        folders,
        qmp: paths.qmp,
        pidFile: paths.pid,
        consoleLog: paths.consoleLog,
      },
      paths,
    );
    await waitForSshd(paths, machine.sshPort, from, BOOT_TIMEOUT_MS[accel.kind], progress);
  } catch (err) {
    await kill(paths).catch(() => {});
    await unmountFolders(paths).catch(() => {});
    throw err;
  }
}

async function stop(spec: GuestSpec, _record: MachineRecord, opts: { timeoutMs: number; force: boolean }): Promise<void> {
  const paths = vmPaths(spec);
  if (opts.force) await kill(paths);
  else await shutdown(paths, opts.timeoutMs);
  await unmountFolders(paths);
}

async function pause(spec: GuestSpec, paused: boolean): Promise<void> {
  const paths = vmPaths(spec);
  if (!(await qemuPid(paths))) throw new EnvboxError('NOT_RUNNING', `env ${spec.id} is not running`, { hint: 'env up starts it' });
  await withQmp(paths.qmp, (qmp) => qmp.execute(paused ? 'stop' : 'cont'));
}

/** Everything but the disk's mounts goes with the state folder; a view still mounted stops the removal. */
async function removeState(paths: VmPaths): Promise<void> {
  const mounted = [...(await mountPoints())].filter((p) => p === paths.dir || p.startsWith(`${paths.dir}/`));
  if (mounted.length > 0) {
    throw new EnvboxError('UNMOUNT_FAILED', `still mounted: ${mounted.join(', ')}`, { hint: 'unmount them (umount -l PATH) and destroy again' });
  }
  await rm(paths.dir, { recursive: true, force: true });
}

async function destroy(spec: GuestSpec): Promise<void> {
  const paths = vmPaths(spec);
  await kill(paths);
  await unmountFolders(paths);
  await removeState(paths);
  await releasePort(spec.id);
}

async function state(spec: GuestSpec): Promise<GuestState> {
  const paths = vmPaths(spec);
  if (await qemuPid(paths)) {
    const status = await withQmp(paths.qmp, (qmp) => qmp.execute('query-status')).catch(() => undefined);
    return (status as { status?: string } | undefined)?.status === 'paused' ? 'frozen' : 'running';
  }
  return existsSync(paths.disk) ? 'stopped' : 'absent';
}

export const qemuProvider: Provider = {
  name: 'vm',
  capabilities: { suspend: true, snapshots: false, folders: 'mount', nativeInotify: false, netns: false },
  checkHost,
  prepareHost,
  create,
  start,
  stop,
  freeze: (spec) => pause(spec, true),
  unfreeze: (spec) => pause(spec, false),
  destroy,
  state,
};
