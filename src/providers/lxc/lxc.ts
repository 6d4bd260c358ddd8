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
  // lxc-info (a halted env's `up`, and the agent beside it, ask several times while the guest boots).
  const socket = monitorSocketName(paths.lxcpath, id);
  const table = socket ? await readFile('/proc/net/unix', 'latin1').catch(() => undefined) : undefined;
  if (socket && table && !listsSocket(table, socket)) return existsSync(join(paths.lxcpath, id, 'config')) ? 'STOPPED' : undefined;
  // With a monitor: a live init tells RUNNING or FROZEN from its freezer; anything less clear asks lxc-info.
  const pid = await initFromMonitor(paths, id);
  const frozen = pid === undefined ? undefined : await freezerState(pid);
  if (frozen) return frozen;
  const result = await run('lxc-info', [...target(paths, id), '-sH']);
  return result.code === 0 ? result.stdout.trim() : undefined;
}

export async function lxcInitPid(paths: EnvPaths, id: string): Promise<number | undefined> {
  const fast = await initFromMonitor(paths, id);
  if (fast !== undefined) return fast;
  const result = await run('lxc-info', [...target(paths, id), '-pH']);
  const pid = Number(result.stdout.trim());
  return result.code === 0 && Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** lxc-start writes its monitor's pid here (`-p`); LXC removes the file when the container stops. */
export const monitorPidFile = (paths: EnvPaths, id: string) => join(paths.lxcpath, id, 'monitor.pid');

/**
 * The container's init, found without lxc-info: the monitor named in the pid file, checked by the title LXC
 * gives it ("[lxc monitor] <lxcpath> <name>", so a reused pid is never taken for it), and the one child of it
 * that is pid 1 in its own namespace. A guest that reboots keeps its monitor and gets a new init: found the
 * same way. undefined when any of it is not so.
 */
export async function initFromMonitor(paths: EnvPaths, id: string): Promise<number | undefined> {
  const monitor = Number((await readFile(monitorPidFile(paths, id), 'latin1').catch(() => '')).trim());
  if (!Number.isInteger(monitor) || monitor <= 0) return undefined;
  const title = await readFile(`/proc/${monitor}/cmdline`, 'latin1').catch(() => '');
  if (title.replace(/\0+$/, '') !== `[lxc monitor] ${paths.lxcpath} ${id}`) return undefined;
  const children = await readFile(`/proc/${monitor}/task/${monitor}/children`, 'latin1').catch(() => '');
  for (const word of children.trim().split(/\s+/)) {
    const pid = Number(word);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const status = await readFile(`/proc/${pid}/status`, 'latin1').catch(() => '');
    if (/^NSpid:\s+\d+(\s+\d+)*\s+1$/m.test(status)) return pid;
  }
  return undefined;
}

/**
 * RUNNING or FROZEN from the freezer of the cgroup `pid` is in (cgroup v1's freezer.state, or v2's
 * cgroup.freeze and cgroup.events); undefined while it is changing or when the cgroup can't be read.
 */
export async function freezerState(pid: number): Promise<'RUNNING' | 'FROZEN' | undefined> {
  const lines = (await readFile(`/proc/${pid}/cgroup`, 'latin1').catch(() => '')).split('\n');
  const top = (path: string | undefined) => (path ? `/${path.split('/').filter(Boolean)[0] ?? ''}` : undefined);
  const v1 = top(lines.find((l) => /^\d+:freezer:/.test(l))?.replace(/^\d+:freezer:/, ''));
  if (v1 && v1 !== '/') {
    const state = (await readFile(`/sys/fs/cgroup/freezer${v1}/freezer.state`, 'latin1').catch(() => '')).trim();
    return state === 'THAWED' ? 'RUNNING' : state === 'FROZEN' ? 'FROZEN' : undefined;
  }
  const v2 = top(lines.find((l) => l.startsWith('0::'))?.slice(3));
  if (!v2 || v2 === '/' || !existsSync('/sys/fs/cgroup/cgroup.controllers')) return undefined;
  const [freeze, events] = await Promise.all([
    readFile(`/sys/fs/cgroup${v2}/cgroup.freeze`, 'latin1').catch(() => ''),
    readFile(`/sys/fs/cgroup${v2}/cgroup.events`, 'latin1').catch(() => ''),
  ]);
  if (freeze.trim() === '0' && /^frozen 0$/m.test(events)) return 'RUNNING';
  if (freeze.trim() === '1' && /^frozen 1$/m.test(events)) return 'FROZEN';
  return undefined;
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
  const result = await run('lxc-start', [...target(paths, id), '-d', '-p', monitorPidFile(paths, id)]);
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
