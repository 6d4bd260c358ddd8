import type { Output } from '../cli/output.js';
import type { GuestState } from '../providers/provider.js';
import { getProvider } from '../providers/registry.js';
import { EnvboxError } from '../util/errors.js';
import { withFileLock } from '../util/lock.js';
import { agentServes } from '../sync/served.js';
import { agentStatus, folderSpecs, stopAgent } from './agent.js';
import { removeFastIndex, stopMaster, writeFastIndex } from './master.js';
import { existingSpec, openEnv, type Env } from './env.js';
import { updateSshConfigInclude } from './ssh-config.js';
import { envDir, removeEnvDir, type EnvRecord } from './state.js';
import { lockFile, notRunning } from './up.js';

function machineOf(env: Env) {
  const machine = env.record?.machine;
  if (!machine) throw new EnvboxError('ENV_NOT_CREATED', `env "${env.config.name}" has not been created`, { hint: 'run env up first' });
  return machine;
}

export async function halt(env: Env, out: Output, opts: { force: boolean; timeoutMs: number }): Promise<GuestState> {
  const machine = machineOf(env);
  const spec = existingSpec(env);
  // The agent and the guest stop side by side: neither needs the other to go first.
  const agentStopped = Promise.all([stopAgent(env), stopMaster(env)]);
  try {
    const state = await env.provider.state(spec);
    if (state === 'stopped' || state === 'absent') return state;
    const step = out.step(opts.force ? 'Stopping (forced)' : 'Shutting down');
    try {
      if (state === 'frozen') await env.provider.unfreeze(spec, machine);
      await env.provider.stop(spec, machine, opts);
    } catch (err) {
      step.fail();
      throw err;
    }
    step.done();
    return 'stopped';
  } finally {
    await agentStopped;
  }
}

export async function suspend(env: Env): Promise<void> {
  const machine = machineOf(env);
  if (!env.provider.capabilities.suspend) {
    throw new EnvboxError('UNSUPPORTED', `${env.provider.name} envs cannot be suspended`, { hint: 'use env halt' });
  }
  const state = await env.provider.state(existingSpec(env));
  if (state === 'frozen') return;
  if (state !== 'running') throw notRunning(env);
  // A frozen guest would leave a shortcut `env ssh` hanging; the ordinary path says it is suspended.
  await removeFastIndex(env);
  await env.provider.freeze(existingSpec(env), machine);
}

export async function resume(env: Env): Promise<void> {
  const machine = machineOf(env);
  const state = await env.provider.state(existingSpec(env));
  if (state === 'running') return;
  if (state !== 'frozen') {
    throw new EnvboxError('ENV_NOT_SUSPENDED', `env "${env.config.name}" is ${state}, not suspended`, { hint: 'env up starts a halted env' });
  }
  await env.provider.unfreeze(existingSpec(env), machine);
  await writeFastIndex(env).catch(() => undefined); // only a shortcut: env ssh works without it
}

/** Removes the guest and everything envbox made for it: container, CoW layer, state, reservations, ssh_config entry. */
export async function destroy(env: Env, out: Output): Promise<boolean> {
  return withFileLock(lockFile(env.id), async () => {
    const { readRecord } = await import('./state.js');
    env.record = await readRecord(env.id);
    if (!env.record) return false;
    const step = out.step(`Destroying ${env.config.name}`);
    try {
      await Promise.all([stopAgent(env), stopMaster(env), env.provider.destroy(existingSpec(env), env.record.machine)]);
      await removeEnvDir(env.id);
      await updateSshConfigInclude();
    } catch (err) {
      step.fail();
      throw err;
    }
    step.done();
    return true;
  });
}

/** `env list --prune`: destroys what is left of an env whose Envfile is gone (its config can't be read). */
export async function pruneEnv(record: EnvRecord, out: Output): Promise<void> {
  const provider = await getProvider(record.provider);
  const env: Env = {
    id: record.id,
    dir: envDir(record.id),
    record,
    provider,
    config: {
      name: record.name,
      provider: record.provider as Env['config']['provider'],
      envfile: record.envfile,
      projectDir: record.projectDir,
      user: record.user?.name ?? 'dev',
      folders: [],
      network: { outbound: false },
    } as unknown as Env['config'],
  };
  const step = out.step(`Removing stale env ${record.id}`);
  await withFileLock(lockFile(env.id), async () => {
    await Promise.all([stopAgent(env), stopMaster(env)]);
    await provider.destroy(existingSpec(env), record.machine);
    await removeEnvDir(record.id);
  });
  step.done();
}

export interface StatusReport {
  name: string;
  id: string;
  provider: string;
  state: GuestState | 'not created';
  address: string | null;
  envfile: string;
  user: string;
  image: string | null;
  folders: {
    host: string;
    guest: string;
    mode: string;
    /** native (the guest's inotify sees host edits), replayed (the agent replays them), off. */
    events: string;
    /** What the agent is doing with it: copying, synced, watching, waiting for the guest, native, off; `agent down` without an agent. */
    state: string;
    /** Changes not yet acknowledged by the guest. */
    pending: number;
    /** Host event → guest acknowledgement of the last batch (ms), and how long the oldest pending one has waited. */
    lagMs: number | null;
    waitingMs: number;
    /** helper (envbox-guest) or sftp (the slower fallback), when the agent has reached the guest. */
    via: string | null;
    problem?: string;
  }[];
  ports: { host: number; guest: number; protocol: string; reverse: boolean }[];
}

/** `known`: the guest's state when the caller has just seen it (env up, after a login worked), not asked again. */
export async function status(env: Env, known?: { state: GuestState }): Promise<StatusReport> {
  const state = env.record?.machine ? (known?.state ?? (await env.provider.state(existingSpec(env)))) : 'not created';
  const agent = state === 'running' ? await agentStatus(env) : undefined;
  const live = agent?.folders ?? [];
  return {
    name: env.config.name,
    id: env.id,
    provider: env.config.provider,
    state,
    address: env.record?.machine?.address ?? null,
    envfile: env.config.envfile,
    user: env.record?.user?.name ?? env.config.user,
    image: env.record?.image?.name ?? null,
    folders: folderSpecs(env).map((f) => {
      const now = live.find((l) => l.host === f.host && l.guest === f.guest);
      const needsAgent = agentServes(f);
      return {
        host: f.host,
        guest: f.guest,
        mode: f.mode,
        events: f.events,
        state: now?.state ?? (!needsAgent ? (f.events === 'off' ? 'off' : 'native') : 'agent down'),
        pending: now?.pending ?? 0,
        lagMs: now?.lastLagMs ?? null,
        waitingMs: now?.lagMs ?? 0,
        via: now?.via ?? null,
        ...(now?.lastProblem ? { problem: now.lastProblem } : {}),
      };
    }),
    ports: env.config.ports.map((p) => ({ host: p.host, guest: p.guest, protocol: p.protocol, reverse: p.reverse })),
  };
}

export { openEnv };
