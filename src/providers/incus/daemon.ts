import { existsSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { UsageError } from '../../util/errors.js';
import { IncusApi, type Flavor } from './api.js';
import { findRemote, remoteApi } from './remotes.js';

/**
 * Which daemon an env uses. The Envfile's `remote:` is unset (the local daemon), a unix socket path,
 * a remote's name from `env remote add`, or the https URL of one. What an env was created on is kept
 * as a DaemonRef so later commands reach the same daemon even if the Envfile changes.
 */
export type DaemonRef = { socket: string } | { remote: string };

import { parseRemoteSetting } from '../../envfile/remote.js';

export { isLocalSetting, parseRemoteSetting, type RemoteSetting } from '../../envfile/remote.js';

/** The local daemon's socket: $INCUS_SOCKET / $INCUS_DIR (LXD_*), else the first usual path that exists. */
export function defaultSocket(flavor: Flavor, env: NodeJS.ProcessEnv = process.env, exists = existsSync): string {
  const upper = flavor.toUpperCase();
  if (env[`${upper}_SOCKET`]) return env[`${upper}_SOCKET`]!;
  if (env[`${upper}_DIR`]) return join(env[`${upper}_DIR`]!, 'unix.socket');
  const candidates =
    flavor === 'incus'
      ? ['/var/lib/incus/unix.socket', '/run/incus/unix.socket']
      : ['/var/snap/lxd/common/lxd/unix.socket', '/var/lib/lxd/unix.socket'];
  return candidates.find((c) => exists(c)) ?? candidates[0]!;
}

export async function daemonRef(flavor: Flavor, setting: string | undefined): Promise<DaemonRef> {
  const parsed = parseRemoteSetting(setting);
  if (parsed.kind === 'local') return { socket: defaultSocket(flavor) };
  if (parsed.kind === 'socket') return { socket: parsed.path };
  return { remote: (await findRemote(parsed.name)).name };
}

export interface Daemon {
  api: IncusApi;
  ref: DaemonRef;
  local: boolean;
  /** Where the env's SSH proxy listens on the daemon's host, which is also where this host dials it. */
  listenAddress: string;
  /** "the local Incus daemon" / "remote prod (https://…)" for messages. */
  label: string;
}

/**
 * The address the daemon's host is reached on from here: an IP in the URL as it is, else the name
 * resolved now (the SSH proxy must bind an address, not a name).
 */
async function hostAddress(url: string): Promise<string> {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) return host;
  try {
    return (await lookup(host)).address;
  } catch {
    throw new UsageError('REMOTE_HOST', `cannot resolve ${host}`, { hint: 'check the remote (env remote list) and DNS' });
  }
}

export async function openDaemon(flavor: Flavor, ref: DaemonRef): Promise<Daemon> {
  if ('socket' in ref) {
    const product = flavor === 'incus' ? 'Incus' : 'LXD';
    return { api: new IncusApi({ kind: 'unix', socket: ref.socket }, flavor), ref, local: true, listenAddress: '127.0.0.1', label: `the local ${product} daemon (${ref.socket})` };
  }
  const remote = await findRemote(ref.remote);
  return { api: await remoteApi(remote), ref, local: false, listenAddress: await hostAddress(remote.url), label: `remote ${remote.name} (${remote.url})` };
}

/** Runs `fn` with the daemon open, closing its connections after. */
export async function withDaemon<T>(flavor: Flavor, ref: DaemonRef, fn: (daemon: Daemon) => Promise<T>): Promise<T> {
  const daemon = await openDaemon(flavor, ref);
  try {
    return await fn(daemon);
  } finally {
    daemon.api.close();
  }
}
