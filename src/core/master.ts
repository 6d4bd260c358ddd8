/**
 * The env's OpenSSH connection: `env up` proves the guest ready with one OpenSSH key login that stays
 * behind as a ControlMaster (the socket `env ssh-config` names), and records a shortcut index for it.
 * Then `env ssh -- CMD` and `env exec CMD` run through that connection straight from the compiled `env`
 * (native/env-shim.c speaks OpenSSH's mux protocol), and so do plain `ssh NAME` calls with the
 * generated ssh_config. Everything here is an optimisation: without OpenSSH, or when the login fails,
 * envbox's own SSH client does the work.
 *
 *   startMaster(env)       OpenSSH login kept as the shared connection; false if it did not work
 *   stopMaster(env)        asks the shared connection to exit (halt, destroy)
 *   writeFastIndex(env)    the shortcut index for the env's Envfile, while the connection is up
 *   removeFastIndex(env)   no shortcut (suspend, halt, destroy)
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, realpath, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../ssh/atomic.js';
import { fnv1a64, renderFastIndex, stampOf } from '../ssh/fast-index.js';
import { withEnv } from '../ssh/quote.js';
import { pathArg } from '../ssh/ssh-config.js';
import { run } from '../util/exec.js';
import { stateHome } from '../util/paths.js';
import { trace } from '../util/trace.js';
import { guestEnvironment, knownHostsFile, type Env } from './env.js';
import { envControlPath, envSshConfig } from './ssh-config.js';

/** The env's own copy of its `env ssh-config` block, which the shared connection is started from. */
export const masterConfigFile = (env: Env) => join(env.dir, 'ssh_config');
/** OpenSSH's messages about the shared connection (it runs in the background, with no terminal). */
export const masterLogFile = (env: Env) => join(env.dir, 'ssh-master.log');
/** Shortcut indexes live here, one per Envfile. */
export const fastIndexDir = () => join(stateHome(), 'fast');
export const fastIndexFile = (envfileRealPath: string) => join(fastIndexDir(), fnv1a64(envfileRealPath));

function controlPath(env: Env): string | undefined {
  try {
    return env.record?.machine ? envControlPath(env.record) : undefined;
  } catch {
    return undefined; // a name or path that can't go into an ssh_config: no sharing
  }
}

/** True when something accepts connections on the unix socket. */
export function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Logs in with OpenSSH (the env key, the pinned host key) and leaves that connection in the background
 * as the env's ControlMaster. Resolves true once the login worked; false when it did not (not up yet, no
 * OpenSSH, a refused key), leaving the caller to find out why with envbox's own client.
 */
export async function startMaster(env: Env, timeoutMs = 10_000): Promise<boolean> {
  const socket = controlPath(env);
  if (!socket || !env.record) return false;
  let config: string;
  try {
    config = envSshConfig(env.record);
  } catch {
    return false;
  }
  await writeFileAtomic(masterConfigFile(env), config, 0o600);
  await mkdir(dirname(socket), { recursive: true, mode: 0o700 });
  // A connection left from an earlier boot of the guest proves nothing about this one.
  if (existsSync(socket)) await stopMaster(env);
  const args = [
    '-F', masterConfigFile(env),
    '-E', masterLogFile(env),
    '-o', 'ControlMaster=yes',
    '-o', 'ControlPersist=yes',
    '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=5',
    // The hybrid post-quantum default costs ~100 ms of CPU per login; envbox's own client uses curve25519 too.
    '-o', 'KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org',
    // A guest stopped behind envbox's back takes its connection down within 15 s.
    '-o', 'ServerAliveInterval=5',
    '-o', 'ServerAliveCountMax=3',
    '-N', '-f', env.record.name,
  ];
  const started = performance.now();
  const code = await new Promise<number | null>((resolve) => {
    // -f: ssh goes to the background (its own session) once logged in, with the socket listening.
    const child = spawn('ssh', args, { stdio: 'ignore', detached: true });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', () => {
      clearTimeout(timer);
      resolve(null);
    });
    child.once('exit', (status) => {
      clearTimeout(timer);
      resolve(status);
    });
  });
  trace(`OpenSSH login as the shared connection: exit ${code} (${(performance.now() - started).toFixed(0)} ms)`);
  return code === 0 && existsSync(socket);
}

/** Asks the env's shared connection (ours, or one a plain `ssh NAME` started) to exit, and forgets its shortcut. */
export async function stopMaster(env: Env): Promise<void> {
  await removeFastIndex(env);
  const socket = controlPath(env);
  if (!socket || !existsSync(socket)) return;
  await run('ssh', ['-F', '/dev/null', '-o', `ControlPath=${pathArg(socket)}`, '-O', 'exit', 'envbox-shared-connection']).catch(() => undefined);
  // A socket whose master died without cleaning up would make the next master fall back to no sharing.
  if (!(await socketAlive(socket))) await rm(socket, { force: true });
}

/** Records the shortcut for this env's Envfile, when its shared connection is up (else removes it). */
export async function writeFastIndex(env: Env): Promise<void> {
  const socket = controlPath(env);
  if (!socket || !(await socketAlive(socket))) return removeFastIndex(env);
  const envfile = await realpath(env.config.envfile);
  const [envfileStat, knownHostsStat] = await Promise.all([
    stat(envfile, { bigint: true }),
    stat(knownHostsFile(env), { bigint: true }),
  ]);
  const data = renderFastIndex({
    envfile: stampOf(envfile, envfileStat),
    knownHosts: stampOf(knownHostsFile(env), knownHostsStat),
    socket,
    prefix: withEnv('', guestEnvironment(env)),
    folders: env.config.folders.map((f) => ({ host: f.host, guest: f.guest })),
  });
  await mkdir(fastIndexDir(), { recursive: true, mode: 0o700 });
  await writeFileAtomic(fastIndexFile(envfile), data, 0o600);
}

export async function removeFastIndex(env: Env): Promise<void> {
  const envfile = await realpath(env.config.envfile).catch(() => undefined);
  if (envfile) await rm(fastIndexFile(envfile), { force: true });
}
