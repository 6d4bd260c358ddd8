import type { Output, Step } from '../cli/output.js';
import { EnvboxError } from '../util/errors.js';
import { traced } from '../util/trace.js';

/**
 * Long work (up, provision) is an ordered list of small steps. A step may return an undo; when a
 * later step fails or the user presses Ctrl-C, the undos run in reverse, so nothing is left half-made.
 * Ctrl-C does not cut a step short behind its back: the step sees the abort signal (image builds and
 * readiness waits stop at once), finishes or fails, and then everything done so far is undone.
 */
export interface StepDef<C> {
  title: string;
  /** Skip the step (no output) when this says so. */
  skip?: (ctx: C) => boolean;
  /** Once this step has succeeded, earlier steps are kept even if a later one fails (e.g. the guest is up: a
   * failing provisioning step leaves it running to be looked into), and Ctrl-C simply stops envbox. */
  commit?: boolean;
  run: (ctx: C, step: Step, signal: AbortSignal) => Promise<void | string | { summary?: string; undo?: () => Promise<void> }>;
}

export async function runSteps<C>(steps: StepDef<C>[], ctx: C, out: Output): Promise<void> {
  const undos: { title: string; undo: () => Promise<void> }[] = [];
  const controller = new AbortController();
  const interrupt = () => {
    if (!controller.signal.aborted) out.warn('interrupted: finishing the current step, then undoing what this run made');
    controller.abort();
  };
  const listen = (on: boolean) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) (on ? process.on : process.off).call(process, sig, interrupt);
  };
  listen(true);
  try {
    for (const def of steps) {
      if (def.skip?.(ctx)) continue;
      if (controller.signal.aborted) throw interrupted();
      const step = out.step(def.title);
      try {
        const result = await traced(`step ${def.title}`, () => def.run(ctx, step, controller.signal));
        if (result && typeof result === 'object' && result.undo) undos.push({ title: def.title, undo: result.undo });
        if (controller.signal.aborted) throw interrupted();
        if (def.commit) {
          undos.length = 0;
          listen(false);
        }
        step.done(typeof result === 'string' ? result : result?.summary);
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
    listen(false);
  }
}

function interrupted(): EnvboxError {
  return new EnvboxError('INTERRUPTED', 'interrupted; what this run had made was undone', { exit: 130 });
}
