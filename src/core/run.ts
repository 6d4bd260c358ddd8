import { isAbsolute, relative } from 'node:path';
import { exec, shell, shellQuote } from '../ssh/index.js';
import { existingSpec, type Env } from './env.js';
import { guestEnvironment, openSession } from './session.js';
import { notRunning } from './up.js';

/**
 * `env ssh` / `env exec`: a shell when argv is empty, else argv run in the guest (in `cwd` when it
 * exists there). Resolves with the guest command's exit status.
 */
export async function runInGuest(env: Env, argv: string[], opts: { tty: boolean; cwd?: string }): Promise<number> {
  if ((await env.provider.state(existingSpec(env))) !== 'running') throw notRunning(env);
  // The shortcut index goes stale when the Envfile changes; this run puts it right for the next one.
  const refreshed = import('./master.js').then((m) => m.writeFastIndex(env)).catch(() => undefined);
  const client = await openSession(env).finally(() => refreshed);
  try {
    if (argv.length === 0) return await shell(client, { cwd: opts.cwd, env: guestEnvironment(env) });
    const command = opts.cwd ? `cd ${shellQuote([opts.cwd])} 2>/dev/null; ${shellQuote(argv)}` : shellQuote(argv);
    const size = process.stdout.columns ? { rows: process.stdout.rows, cols: process.stdout.columns, term: process.env.TERM ?? 'xterm' } : true;
    return await exec(client, command, {
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
      pty: opts.tty ? size : undefined,
      env: guestEnvironment(env),
    });
  } finally {
    client.end();
  }
}

/** The guest folder matching the host's current folder, when that is inside a shared folder. */
export function guestCwd(env: Env, cwd = process.cwd()): string | undefined {
  for (const f of env.config.folders) {
    const rel = relative(f.host, cwd);
    if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) return rel ? `${f.guest}/${rel}` : f.guest;
  }
  return undefined;
}
