import { readFile } from 'node:fs/promises';
import type { Client } from 'ssh2';
import { connect } from '../ssh/index.js';
import { hostKeyAlias, keyFile, knownHostsFile, sshEndpoint, type Env } from './env.js';

/** Logs in to a created env's guest as its user, checking the pinned host key. */
export async function openSession(env: Env, timeoutMs = 15_000): Promise<Client> {
  return connect({
    ...sshEndpoint(env),
    username: env.record?.user?.name ?? env.config.user,
    privateKey: await readFile(keyFile(env)),
    knownHostsFile: knownHostsFile(env),
    hostAlias: hostKeyAlias(env),
    envName: env.config.name,
    timeoutMs,
  });
}

export { guestEnvironment } from './env.js';
