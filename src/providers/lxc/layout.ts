import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import type { GuestSpec, MachineRecord } from '../provider.js';

/**
 * Where an env's pieces live. LXC insists that the unprivileged container root can traverse its lxcpath and
 * rootfs, which rules out the 0700 XDG state folder: config and mounts go under /run/envbox (rebuilt by
 * every `start`, gone after a reboot), only the guest's data (overlay upper layer) stays in the state folder.
 */
export const RUN_DIR = '/run/envbox';

export interface EnvPaths {
  /** `lxc-* -P` */
  lxcpath: string;
  configDir: string;
  config: string;
  /** This env's mounts: the idmapped image, the merged rootfs and the idmapped shared folders. */
  mnt: string;
  lower: string;
  rootfs: string;
  folders: string;
  /** The env's persistent data in its state folder. */
  data: string;
  upper: string;
  work: string;
  /** The rootfs copy when no idmap helper could be built. */
  copy: string;
  log: string;
  consoleLog: string;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

export function envPaths(spec: Pick<GuestSpec, 'id' | 'stateDir'>): EnvPaths {
  if (!ID.test(spec.id)) {
    throw new EnvboxError('ENV_ID', `env id ${JSON.stringify(spec.id)} can't name a container`, {
      hint: 'use letters, digits, ".", "_" and "-" in the env name',
    });
  }
  const lxcpath = join(RUN_DIR, 'lxc');
  const mnt = join(RUN_DIR, 'mnt', spec.id);
  const data = join(spec.stateDir, 'lxc');
  return {
    lxcpath,
    configDir: join(lxcpath, spec.id),
    config: join(lxcpath, spec.id, 'config'),
    mnt,
    lower: join(mnt, 'lower'),
    rootfs: join(mnt, 'rootfs'),
    folders: join(mnt, 'folders'),
    data,
    upper: join(data, 'upper'),
    work: join(data, 'work'),
    copy: join(data, 'rootfs'),
    log: join(data, 'lxc.log'),
    consoleLog: join(data, 'console.log'),
  };
}

export const folderMountPath = (paths: EnvPaths, index: number): string => join(paths.folders, String(index));

/**
 * What `create` decided, kept by core and handed back on every call. `overlay`: the image, idmapped, under a
 * per-env upper layer; `copy`: a private copy of the image that LXC idmaps (the path without the helper).
 */
export interface LxcMachine extends MachineRecord {
  address: string;
  provider: 'lxc';
  bridge: string;
  gateway: string;
  veth: string;
  idmapSlot: number;
  idmapBase: number;
  rootfsMode: 'overlay' | 'copy';
  /** The image root the overlay was made on: its upper layer only makes sense on top of this one. */
  image: string;
}

export function asLxcMachine(machine: MachineRecord): LxcMachine {
  const m = machine as Partial<LxcMachine>;
  if (m.provider !== 'lxc' || typeof m.idmapBase !== 'number' || typeof m.veth !== 'string' || !m.rootfsMode || !m.image) {
    throw new EnvboxError('MACHINE_RECORD', 'the env was not created by the container provider, or its record is damaged', {
      hint: 'env destroy, then env up',
    });
  }
  return m as LxcMachine;
}
