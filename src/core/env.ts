import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { EnvConfig } from '../envfile/index.js';
import type { GuestSpec, GuestUser, Provider } from '../providers/provider.js';
import { getProvider } from '../providers/registry.js';
import { EnvboxError } from '../util/errors.js';
import { envDir, envId, readRecord, type EnvRecord } from './state.js';

/** An env as the commands see it: its validated Envfile, its id and state folder, its record, its provider. */
export interface Env {
  config: EnvConfig;
  id: string;
  dir: string;
  record: EnvRecord | undefined;
  provider: Provider;
}

export async function openEnv(envfileFlag: string | undefined): Promise<Env> {
  // Loaded here, not at the top: the agent (agent-main.ts) uses this module without the Envfile parser.
  const { readEnvfileCached } = await import('../envfile/cache.js');
  const config = await readEnvfileCached(envfileFlag);
  const id = envId(config.name, config.envfile);
  const record = await readRecord(id);
  const provider = await getProvider(record?.provider ?? config.provider, { remote: config.remote });
  return { config, id, dir: envDir(id), record, provider };
}

/** Like openEnv, but the env must have been created. */
export async function openCreatedEnv(envfileFlag: string | undefined): Promise<Env & { record: EnvRecord }> {
  const env = await openEnv(envfileFlag);
  if (!env.record?.machine) {
    throw new EnvboxError('ENV_NOT_CREATED', `env "${env.config.name}" has not been created`, { hint: 'run env up first' });
  }
  return env as Env & { record: EnvRecord };
}

/**
 * The guest user gets the uid/gid of the host user who owns the project folder (the sudo caller's
 * when that is root's folder under sudo), so shared files have one owner on both sides. A host owner
 * that can't be a normal guest user (root, system ids) is mapped to guest uid 1000.
 */
export function guestUser(config: EnvConfig): Omit<GuestUser, 'authorizedKey'> & { hostUid: number; hostGid: number } {
  const st = statSync(config.projectDir);
  let hostUid = st.uid;
  let hostGid = st.gid;
  if (hostUid === 0 && process.env.SUDO_UID && process.env.SUDO_GID) {
    hostUid = Number(process.env.SUDO_UID);
    hostGid = Number(process.env.SUDO_GID);
  }
  const normal = (n: number) => n >= 1000 && n < 60000;
  return {
    name: config.user,
    uid: normal(hostUid) ? hostUid : 1000,
    gid: normal(hostGid) ? hostGid : 1000,
    home: `/home/${config.user}`,
    hostUid,
    hostGid,
  };
}

/** The provider's view of the env, rebuilt from the Envfile and what the record says was created. */
export function guestSpec(env: Env, extra: { rootfs: string; authorizedKey: string; hostKey?: GuestSpec['hostKey'] }): GuestSpec {
  const user = guestUser(env.config);
  return {
    id: env.id,
    hostname: env.config.name,
    stateDir: env.dir,
    rootfs: extra.rootfs,
    cpus: env.config.cpus,
    memoryBytes: env.config.memoryBytes,
    diskBytes: env.config.diskBytes,
    accel: env.config.accel,
    user: { ...user, authorizedKey: extra.authorizedKey },
    folders: env.config.folders.filter((f) => f.mode === 'mount').map((f) => ({ host: f.host, guest: f.guest })),
    network: { outbound: env.config.network.outbound },
    hostKey: extra.hostKey,
  };
}

/** A spec good enough for stop/freeze/destroy/state of an env that exists (no image or keys needed). */
export function existingSpec(env: Env): GuestSpec {
  return guestSpec(env, { rootfs: String(env.record?.image?.rootfs ?? ''), authorizedKey: '' });
}

export const keyFile = (env: Env) => join(env.dir, 'id_ed25519');
export const knownHostsFile = (env: Env) => join(env.dir, 'known_hosts');
export const hostKeyAlias = (env: Env) => `envbox-${env.id}`;
/** Where the guest's sshd is reached. */
export const sshEndpoint = (env: Env) => ({ host: env.record!.machine!.address, port: Number(env.record!.machine!.sshPort ?? 22) });

/** Envfile `env:` values plus what every guest command should know about its env. */
export function guestEnvironment(env: Env): Record<string, string> {
  return { ...env.config.env };
}
