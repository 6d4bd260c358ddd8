import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { run, runOk } from '../../util/exec.js';
import type { EnvPaths } from './layout.js';

/** Thin wrappers around the lxc-* commands, always with envbox's own lxcpath. */

const target = (paths: EnvPaths, id: string) => ['-P', paths.lxcpath, '-n', id];

/**
 * The abstract socket LXC's monitor listens on for as long as the container is not STOPPED
 * (`@<lxcpath>/<name>/command`); undefined when the name is too long to be used as it is (LXC hashes it then).
 */
export function monitorSocketName(lxcpath: string, id: string): string | undefined {
  const name = `@${lxcpath}/${id}/command`;
  return name.length <= 100 ? name : undefined;
}

/** Whether /proc/net/unix's text lists `socket` as a bound name. */
export function listsSocket(procNetUnix: string, socket: string): boolean {
  return procNetUnix.includes(` ${socket}\n`) || procNetUnix.endsWith(` ${socket}`);
}

/** RUNNING, STOPPED, FROZEN, … or undefined when LXC has no such container (no config under the lxcpath). */
export async function lxcState(paths: EnvPaths, id: string): Promise<string | undefined> {
  // A container without a monitor is stopped: found out from the kernel's socket table, without starting
  // lxc-info (a halted env's `up` asks several times). With a monitor, lxc-info tells the exact state.
  const socket = monitorSocketName(paths.lxcpath, id);
  const table = socket ? await readFile('/proc/net/unix', 'latin1').catch(() => undefined) : undefined;
  if (socket && table && !listsSocket(table, socket)) return existsSync(join(paths.lxcpath, id, 'config')) ? 'STOPPED' : undefined;
  const result = await run('lxc-info', [...target(paths, id), '-sH']);
  return result.code === 0 ? result.stdout.trim() : undefined;
}

export async function lxcInitPid(paths: EnvPaths, id: string): Promise<number | undefined> {
  const result = await run('lxc-info', [...target(paths, id), '-pH']);
  const pid = Number(result.stdout.trim());
  return result.code === 0 && Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The last error lines LXC logged, to explain a failed start. */
async function logTail(paths: EnvPaths): Promise<string> {
  const text = await readFile(paths.log, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => / ERROR /.test(l))
    .slice(-6)
    .map((l) => l.replace(/^.*? ERROR\s+/, ''))
    .join('\n');
}

/** `lxc-start -d` returns once the container is RUNNING (or has failed). */
export async function lxcStart(paths: EnvPaths, id: string): Promise<void> {
  const result = await run('lxc-start', [...target(paths, id), '-d']);
  if (result.code === 0) return;
  const detail = (await logTail(paths)) || result.stderr.trim();
  throw new EnvboxError('CONTAINER_START', `the container did not start:\n${detail}`, {
    hint: `env doctor checks the host; the full log is ${paths.log} (lxc-start -F -P ${paths.lxcpath} -n ${id} shows the boot)`,
  });
}

/** Clean shutdown (halt signal to init) for up to `timeoutS`, then killed; `timeoutS` 0 kills at once. */
export async function lxcStop(paths: EnvPaths, id: string, timeoutS: number): Promise<void> {
  const args = timeoutS > 0 ? ['-t', String(timeoutS)] : ['-k'];
  const result = await run('lxc-stop', [...target(paths, id), ...args]);
  // lxc-stop exits 2 when the container was already stopped.
  if (result.code !== 0 && (await lxcState(paths, id)) !== 'STOPPED') {
    throw new EnvboxError('CONTAINER_STOP', `the container did not stop: ${result.stderr.trim()}`, {
      hint: `try env halt --force; lxc-stop -k -P ${paths.lxcpath} -n ${id} kills it`,
    });
  }
}

export async function lxcFreeze(paths: EnvPaths, id: string, freeze: boolean): Promise<void> {
  await runOk(freeze ? 'lxc-freeze' : 'lxc-unfreeze', target(paths, id), {
    code: freeze ? 'CONTAINER_FREEZE' : 'CONTAINER_UNFREEZE',
    hint: 'env doctor checks that the cgroup freezer is available',
  });
}
