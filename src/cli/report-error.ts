import { EnvboxError, isEnvboxError } from '../util/errors.js';
import type { Output } from './output.js';

/**
 * The one way an error reaches the user: an expected one (EnvboxError) as its message, hint and exit
 * status, anything else as a bug; as text on stderr or as a JSON envelope under --json.
 */
export function reportError(err: unknown, out: Output, opts: { debug: boolean }): void {
  const cause = err as Error;
  const error = isEnvboxError(err)
    ? err
    : new EnvboxError('BUG', `unexpected error: ${cause.message}`, {
        hint: opts.debug ? undefined : 'this is a bug in envbox; run again with --debug for the stack trace and report it',
        details: opts.debug ? { stack: cause.stack } : undefined,
      });
  if (out.json) {
    out.printJson({ ok: false, error: error.toJSON() });
  } else {
    process.stderr.write(`${out.paint('red', 'error:')} ${error.message}\n`);
    if (error.hint) process.stderr.write(`${out.paint('dim', '→')} ${error.hint}\n`);
    if (opts.debug && error.code === 'BUG' && cause.stack) process.stderr.write(`${cause.stack}\n`);
  }
  process.exitCode = error.exit;
}
