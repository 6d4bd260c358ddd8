import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import type { GuestSpec, MachineRecord } from '../provider.js';
import type { AccelChoice } from './accel.js';

/**
 * Where a VM env's pieces live: all of them in `<stateDir>/qemu/`, owned by root 0700 like the rest of the
 * env's state (QEMU runs as root, so nothing needs to be reachable by another user):
 *
 *   disk.qcow2    the env's disk: a copy-on-write overlay on the VM image's base disk
 *   seed/         the read-only seed share (once/ and always/, see seed.ts)
 *   qmp.sock      QEMU's control socket;  qemu.pid  its pid file
 *   console.log   the guest's serial console (kernel and boot messages), kept across boots for env logs
 *   qemu.log      QEMU's own stderr
 *   folders/N     idmapped views of the shared folders, when the guest user's ids differ from the owner's
 */
export interface VmPaths {
  dir: string;
  disk: string;
  seed: string;
  qmp: string;
  pid: string;
  consoleLog: string;
  qemuLog: string;
  folders: string;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

export function vmPaths(spec: Pick<GuestSpec, 'id' | 'stateDir'>): VmPaths {
  if (!ID.test(spec.id)) {
    throw new EnvboxError('ENV_ID', `env id ${JSON.stringify(spec.id)} can't name a VM`, {
      hint: 'use letters, digits, ".", "_" and "-" in the env name',
    });
  }
  const dir = join(spec.stateDir, 'qemu');
  return {
    dir,
    disk: join(dir, 'disk.qcow2'),
    seed: join(dir, 'seed'),
    qmp: join(dir, 'qmp.sock'),
    pid: join(dir, 'qemu.pid'),
    consoleLog: join(dir, 'console.log'),
    qemuLog: join(dir, 'qemu.log'),
    folders: join(dir, 'folders'),
  };
}

export const folderViewPath = (paths: VmPaths, index: number): string => join(paths.folders, String(index));

/** What `create` decided, kept by core in env.json and handed back on every call. */
export interface QemuMachine extends MachineRecord {
  provider: 'qemu';
  /** Always 127.0.0.1: sshd is reached through QEMU's user-mode forward on `sshPort`. */
  address: string;
  sshPort: number;
  /** The guest's own address on QEMU's user-mode network. */
  guestAddress: string;
  /** The VM image (base disk, kernel, initrd) the env's disk is an overlay on. */
  image: { key: string; dir: string };
  /** The disk's virtual size in bytes. */
  diskBytes: number;
  /** How the env was booted last, and why (env status, env doctor). */
  accel: AccelChoice;
}

export function asQemuMachine(machine: MachineRecord): QemuMachine {
  const m = machine as Partial<QemuMachine>;
  if (m.provider !== 'qemu' || typeof m.sshPort !== 'number' || !m.image?.dir || typeof m.diskBytes !== 'number') {
    throw new EnvboxError('MACHINE_RECORD', 'the env was not created by the vm provider, or its record is damaged', {
      hint: 'env destroy, then env up',
    });
  }
  return m as QemuMachine;
}

/** QEMU user-mode networking's fixed layout (slirp): the guest, the host's gateway and its DNS forwarder. */
export const SLIRP = { net: '10.0.2.0/24', guest: '10.0.2.15', gateway: '10.0.2.2', dns: '10.0.2.3' } as const;
