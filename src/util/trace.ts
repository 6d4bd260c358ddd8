import { performance } from 'node:perf_hooks';

/**
 * ENVBOX_TRACE=1: a timing line on stderr for each step, external command and milestone, measured from
 * the start of the process (so Node's own start-up shows too). Off by default; costs one check when off.
 */
const enabled = Boolean(process.env.ENVBOX_TRACE);

export function traceOn(): boolean {
  return enabled;
}

/** Writes `envbox trace <pid> +<ms> <what>` when tracing is on. */
export function trace(what: string): void {
  if (!enabled) return;
  process.stderr.write(`envbox trace ${process.pid} +${performance.now().toFixed(0)}ms ${what}\n`);
}

/** Runs `fn` and traces how long it took; just runs it when tracing is off. */
export async function traced<T>(what: string, fn: () => Promise<T>): Promise<T> {
  if (!enabled) return fn();
  const started = performance.now();
  try {
    return await fn();
  } finally {
    trace(`${what} (${(performance.now() - started).toFixed(0)} ms)`);
  }
}
