import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../ssh/atomic.js';
import { EnvboxError } from '../../util/errors.js';
import { withFileLock } from '../../util/lock.js';
import { hostStateDir } from '../../util/paths.js';
import type { GuestSpec, MachineRecord } from '../provider.js';
import type { Flavor } from './api.js';
import type { FolderSharing } from './config.js';
import type { DaemonRef } from './daemon.js';
import type { DaemonImage } from './image.js';

/** What `create` decided, kept by core in the env's record and handed back on every call. */
export interface IncusMachine extends MachineRecord {
  provider: Flavor;
  /** The daemon's host as this host reaches it; sshd is published there on sshPort. */
  address: string;
  sshPort: number;
  daemon: DaemonRef;
  instance: string;
  image: DaemonImage;
  folders: FolderSharing['mode'];
  hostPublicKey: string;
}

export function asIncusMachine(machine: MachineRecord): IncusMachine {
  const m = machine as Partial<IncusMachine>;
  if ((m.provider !== 'incus' && m.provider !== 'lxd') || typeof m.instance !== 'string' || !m.daemon || typeof m.sshPort !== 'number') {
    throw new EnvboxError('MACHINE_RECORD', 'the env was not created by the incus provider, or its record is damaged', { hint: 'env destroy, then env up' });
  }
  return m as IncusMachine;
}

/**
 * Where an env's instance lives, also kept in the env's state folder from the moment create picks it:
 * `state` gets no machine record, and a create that died half-way must still be destroyable.
 */
export interface Placement {
  daemon: DaemonRef;
  instance: string;
}

const placementFile = (spec: Pick<GuestSpec, 'stateDir'>) => join(spec.stateDir, 'incus.json');

export async function writePlacement(spec: Pick<GuestSpec, 'stateDir'>, placement: Placement): Promise<void> {
  await writeFileAtomic(placementFile(spec), `${JSON.stringify(placement)}\n`, 0o600);
}

export async function removePlacement(spec: Pick<GuestSpec, 'stateDir'>): Promise<void> {
  await rm(placementFile(spec), { force: true });
}

/** The env's instance and daemon: from the machine record when there is one, else the state folder. */
export async function placementOf(spec: Pick<GuestSpec, 'stateDir'>, machine?: MachineRecord): Promise<Placement | undefined> {
  if (machine) {
    const m = asIncusMachine(machine);
    return { daemon: m.daemon, instance: m.instance };
  }
  try {
    const data = JSON.parse(await readFile(placementFile(spec), 'utf8')) as Partial<Placement>;
    return data.daemon && typeof data.instance === 'string' ? { daemon: data.daemon, instance: data.instance } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Serialises, per daemon and image, importing an image + creating an instance from it against
 * removing that image when its last instance goes (on this host; a shared remote can still race).
 */
export function withImageLock<T>(daemon: DaemonRef, imageKey: string, fn: () => Promise<T>): Promise<T> {
  const daemonKey = createHash('sha256').update(JSON.stringify(daemon)).digest('hex').slice(0, 12);
  return withFileLock(join(hostStateDir(), 'incus', `${daemonKey}-${imageKey}.lock`), fn);
}
