import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EnvboxError } from '../util/errors.js';
import { imagesDir } from '../util/paths.js';
import type { Progress } from '../util/progress.js';
import { pidAlive } from '../util/lock.js';

const POLL_MS = 500;
/** A lock file still empty after this long belongs to a process that died between creating and writing it. */
const EMPTY_GRACE_MS = 5_000;

export function lockFile(key: string): string {
  return join(imagesDir(), `.${key}.lock`);
}

/** The pid holding `key`'s lock, if a live process does. */
export async function lockHolder(key: string): Promise<number | undefined> {
  const pid = await readPid(lockFile(key));
  return pid !== undefined && pidAlive(pid) ? pid : undefined;
}

/**
 * Runs `fn` holding the cache lock for `key`, so two `env up`s that need the same image build it once:
 * the second waits, then finds it built. A lock left by a dead process is taken over.
 */
export async function withImageLock<T>(
  key: string,
  what: string,
  progress: Progress,
  signal: AbortSignal | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  await mkdir(imagesDir(), { recursive: true, mode: 0o755 });
  const file = lockFile(key);
  for (;;) {
    if (signal?.aborted) throw aborted(what);
    try {
      const handle = await open(file, 'wx', 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = await readPid(file);
    if (await isStale(file, pid)) {
      // Re-read just before removing: another waiter may have replaced the stale lock with its own.
      if ((await readPid(file)) === pid) await unlink(file).catch(() => {});
      continue;
    }
    progress.update(`waiting for another envbox${pid ? ` (pid ${pid})` : ''} to finish ${what}`);
    await sleep(POLL_MS, undefined, { signal }).catch(() => {});
  }
  try {
    return await fn();
  } finally {
    if ((await readPid(file)) === process.pid) await unlink(file).catch(() => {});
  }
}

export function aborted(what: string): EnvboxError {
  return new EnvboxError('IMAGE_ABORTED', `${what} was interrupted`, { hint: 'run the command again to start over' });
}

async function readPid(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** Gone (try again at once), held by a dead process, or left empty by one that died before writing its pid. */
async function isStale(file: string, pid: number | undefined): Promise<boolean> {
  if (pid !== undefined) return !pidAlive(pid);
  const st = await stat(file).catch(() => undefined);
  return st === undefined || Date.now() - st.mtimeMs > EMPTY_GRACE_MS;
}
