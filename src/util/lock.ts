import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EnvboxError } from './errors.js';

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A process that has exited but not been reaped yet (a zombie) is gone for every purpose here; an
  // init that reaps orphans only now and then would otherwise keep it "alive" for a second or more.
  return !zombie(pid);
}

function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name, which is in parentheses and may itself hold ") ".
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}

async function holder(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Runs `fn` holding an exclusive lock file (it holds the owner's pid). Others wait, calling
 * `onWait` once with the holder's pid; a lock whose owner died is taken over.
 */
export async function withFileLock<T>(
  file: string,
  fn: () => Promise<T>,
  opts: { onWait?: (pid: number | undefined) => void; signal?: AbortSignal; pollMs?: number } = {},
): Promise<T> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  let told = false;
  for (;;) {
    if (opts.signal?.aborted) throw new EnvboxError('INTERRUPTED', 'interrupted while waiting for another envbox', {});
    try {
      const handle = await open(file, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = await holder(file);
    if (pid === undefined || !pidAlive(pid)) {
      // An empty file may be a lock being written this instant: give its owner a moment.
      if (pid === undefined) await sleep(50);
      if ((await holder(file)) === pid) await unlink(file).catch(() => {});
      continue;
    }
    if (!told) opts.onWait?.(pid);
    told = true;
    await sleep(opts.pollMs ?? 100);
  }
  try {
    return await fn();
  } finally {
    if ((await holder(file)) === process.pid) await unlink(file).catch(() => {});
  }
}
