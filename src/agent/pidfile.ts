/**
 * The agent's pid file. A pid alone can outlive its process and be reused, so a pid counts as the
 * agent only while that process's command line is still `… cli.js agent …` (or agent-main.js agent).
 */
import { readFile, rm } from 'node:fs/promises';
import { pidAlive } from '../util/lock.js';
import { writeFileAtomic } from '../ssh/atomic.js';

export async function readPid(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export async function isAgentProcess(pid: number): Promise<boolean> {
  if (!pidAlive(pid)) return false;
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  return argv.includes('agent') && argv.some((a) => /(cli|agent-main)\.[jt]s$/.test(a));
}

/** The pid of this env's running agent, if there is one. */
export async function runningAgentPid(pidFile: string): Promise<number | undefined> {
  const pid = await readPid(pidFile);
  return pid !== undefined && (await isAgentProcess(pid)) ? pid : undefined;
}

export const writePid = (file: string) => writeFileAtomic(file, `${process.pid}\n`, 0o600);

/** Removes the pid file if it still names `pid` (a newer agent may have replaced it). */
export async function removePid(file: string, pid = process.pid): Promise<void> {
  if ((await readPid(file)) === pid) await rm(file, { force: true });
}
