import type { Output, Step } from '../cli/output.js';
import { EnvboxError } from '../util/errors.js';

/**
 * Long work (up, provision) is an ordered list of small steps. A step may return an undo; when a
 * later step fails or the user presses Ctrl-C, the undos run in reverse, so nothing is left half-made.
 */
export interface StepDef<C> {
  title: string;
  /** Skip the step (no output) when this says so. */
  skip?: (ctx: C) => boolean;
  /** Once this step has succeeded, earlier steps are kept even if a later one fails (e.g. the guest is up: a
   * failing provisioning step leaves it running to be looked into). */
  commit?: boolean;
  run: (ctx: C, step: Step, signal: AbortSignal) => Promise<void | string | { summary?: string; undo?: () => Promise<void> }>;
}

export async function runSteps<C>(steps: StepDef<C>[], ctx: C, out: Output): Promise<void> {
  const undos: { title: string; undo: () => Promise<void> }[] = [];
  const controller = new AbortController();
  const interrupt = () => controller.abort();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    for (const def of steps) {
      if (def.skip?.(ctx)) continue;
      if (controller.signal.aborted) throw interrupted();
      const step = out.step(def.title);
      try {
        const result = await Promise.race([def.run(ctx, step, controller.signal), abortedPromise(controller.signal)]);
        const summary = typeof result === 'string' ? result : result?.summary;
        if (result && typeof result === 'object' && result.undo) undos.push({ title: def.title, undo: result.undo });
        if (def.commit) undos.length = 0;
        step.done(summary);
      } catch (err) {
        step.fail();
        throw controller.signal.aborted ? interrupted() : err;
      }
    }
  } catch (err) {
    for (const { title, undo } of undos.reverse()) {
      try {
        await undo();
      } catch (undoErr) {
        out.warn(`could not undo "${title}": ${(undoErr as Error).message}`);
      }
    }
    throw err;
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
}

function interrupted(): EnvboxError {
  return new EnvboxError('INTERRUPTED', 'interrupted; what this run had made was rolled back', { exit: 130 });
}

function abortedPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(interrupted()), { once: true }));
}
