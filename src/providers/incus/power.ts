import { EnvboxError, isEnvboxError } from '../../util/errors.js';
import type { Progress } from '../../util/progress.js';
import type { GuestSpec, GuestState } from '../provider.js';
import type { IncusApi } from './api.js';
import { folderSharing, type Devices } from './config.js';

/** Instance status as the daemon says it ("Running", "Frozen", …), undefined when there is none. */
export async function instanceStatus(api: IncusApi, name: string): Promise<string | undefined> {
  return (await api.find<{ status: string }>(`/1.0/instances/${encodeURIComponent(name)}`, `looking up ${name}`))?.status;
}

export function guestState(status: string | undefined): GuestState {
  switch (status) {
    case undefined:
      return 'absent';
    case 'Running':
    case 'Starting':
    case 'Stopping':
    case 'Restarting':
      return 'running';
    case 'Frozen':
    case 'Freezing':
      return 'frozen';
    default:
      return 'stopped';
  }
}

export type Action = { action: 'start' | 'freeze' | 'unfreeze' } | { action: 'stop'; timeout?: number; force?: boolean };

export function changeState(api: IncusApi, name: string, body: Action, progress?: Progress): Promise<unknown> {
  const doing = { start: 'starting', stop: 'stopping', freeze: 'freezing', unfreeze: 'unfreezing' }[body.action];
  return api.call('PUT', `/1.0/instances/${encodeURIComponent(name)}/state`, `${doing} ${name}`, body, progress);
}

/**
 * When the daemon turns out unable to shift a folder's ownership (LXD 5.0 says "Required idmapping
 * abilities not available"; a file system without idmapped mounts does too), the folders go over to
 * raw.idmap for the host user instead, once.
 */
async function useRawIdmap(api: IncusApi, spec: GuestSpec, name: string): Promise<void> {
  const path = `/1.0/instances/${encodeURIComponent(name)}`;
  const sharing = folderSharing(spec.user, spec.folders, false);
  if (sharing.mode !== 'raw.idmap') return;
  const { devices } = await api.get<{ devices: Devices }>(path, `reading ${name}`);
  // PATCH replaces each device it names as a whole and merges config keys.
  const unshifted = Object.fromEntries(
    Object.entries(devices)
      .filter(([, d]) => d.type === 'disk' && d.shift === 'true')
      .map(([key, d]) => {
        const { shift: _shift, ...rest } = d;
        return [key, rest];
      }),
  );
  await api.call('PATCH', path, `switching ${name} to raw.idmap`, { config: { 'raw.idmap': sharing.rawIdmap }, devices: unshifted });
}

export async function startInstance(api: IncusApi, spec: GuestSpec, name: string, progress: Progress): Promise<void> {
  const status = await instanceStatus(api, name);
  if (status === undefined) throw new EnvboxError('ENV_GONE', `instance ${name} is gone from the daemon`, { hint: 'env destroy, then env up makes a new one' });
  if (guestState(status) === 'running') return;
  if (status === 'Frozen') {
    await changeState(api, name, { action: 'unfreeze' });
    return;
  }
  progress.update(`starting ${name}`);
  try {
    await changeState(api, name, { action: 'start' }, progress);
  } catch (err) {
    if (!isEnvboxError(err) || err.code !== 'INCUS_IDMAP' || spec.folders.length === 0) throw err;
    progress.log('the daemon cannot shift the shared folders: mapping the host user with raw.idmap instead');
    await useRawIdmap(api, spec, name);
    await changeState(api, name, { action: 'start' }, progress);
  }
}

/** A clean shutdown that may take `timeoutMs`, then a forced one; `force` goes straight to it. */
export async function stopInstance(api: IncusApi, name: string, opts: { timeoutMs: number; force: boolean }): Promise<void> {
  const status = await instanceStatus(api, name);
  if (status === undefined || guestState(status) === 'stopped') return;
  if (status === 'Frozen') await changeState(api, name, { action: 'unfreeze' });
  if (!opts.force) {
    try {
      await changeState(api, name, { action: 'stop', timeout: Math.max(1, Math.ceil(opts.timeoutMs / 1000)) });
      return;
    } catch (err) {
      if (!isEnvboxError(err)) throw err;
      // It didn't shut down in time: fall through to the forced stop.
    }
  }
  if (guestState(await instanceStatus(api, name)) !== 'stopped') await changeState(api, name, { action: 'stop', force: true });
}

export async function freezeInstance(api: IncusApi, name: string, freeze: boolean): Promise<void> {
  const state = guestState(await instanceStatus(api, name));
  if (state === (freeze ? 'frozen' : 'running')) return;
  if (state !== 'running' && state !== 'frozen') throw new EnvboxError('NOT_RUNNING', `env instance ${name} is not running`, { hint: 'env up starts it' });
  await changeState(api, name, { action: freeze ? 'freeze' : 'unfreeze' });
}
