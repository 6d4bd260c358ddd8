import { setTimeout as sleep } from 'node:timers/promises';
import { EnvboxError } from '../util/errors.js';
import { trace } from '../util/trace.js';

/**
 * Readiness is a declared list of checks, tried in order and retried under one timeout (the way
 * lima's requirements.go does it). When time runs out, the first unmet check's hint is the message.
 */
export interface ReadyCheck {
  description: string;
  /** What to look at when this check never passes. */
  hint: string;
  /** Resolves true when met; throwing an EnvboxError fails at once (it will not get better by waiting). */
  check: () => Promise<boolean>;
}

/**
 * A local container reaches each check within a second or two, and a failed check (a refused connect)
 * costs next to nothing, so keep polling briskly through that window; later, back off for slow guests.
 */
const BRISK_DELAY_MS = 15;
const BRISK_PHASE_MS = 3000;

export async function waitReady(
  checks: ReadyCheck[],
  opts: { timeoutMs: number; onCheck?: (description: string) => void; signal?: AbortSignal },
): Promise<void> {
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  let delay = BRISK_DELAY_MS;
  for (const c of checks) {
    opts.onCheck?.(c.description);
    for (;;) {
      if (opts.signal?.aborted) throw new EnvboxError('INTERRUPTED', 'interrupted', { exit: 130 });
      let met = false;
      let last: unknown;
      try {
        met = await c.check();
      } catch (err) {
        if (err instanceof EnvboxError) throw err;
        last = err;
      }
      if (met) {
        trace(`ready: ${c.description}`);
        break;
      }
      if (Date.now() > deadline) {
        throw new EnvboxError('NOT_READY', `the guest never got ready: ${c.description} did not pass${last ? ` (${(last as Error).message})` : ''}`, {
          hint: c.hint,
        });
      }
      await sleep(delay);
      if (Date.now() - started > BRISK_PHASE_MS) delay = Math.min(delay * 2, 250);
    }
  }
}
