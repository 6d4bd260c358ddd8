import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
/** The compiled shim when it is built (as installed), else the portable bin/env. */
export const SHIM = existsSync(join(ROOT, 'native/build/env-shim')) ? join(ROOT, 'native/build/env-shim') : join(ROOT, 'bin/env');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion, feeding `input` on stdin. */
export function runProgram(
  file: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; argv0?: string } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env ?? process.env, argv0: opts.argv0 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    // 'exit', not 'close': a program may leave a daemon holding our pipes (OpenSSH's ControlPersist master).
    child.on('exit', (code, signal) => {
      const finish = () => resolvePromise({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      const ended = (s: NodeJS.ReadableStream & { readableEnded: boolean }) =>
        s.readableEnded ? Promise.resolve() : new Promise<void>((r) => s.once('end', () => r()));
      void Promise.race([
        Promise.all([ended(child.stdout), ended(child.stderr)]),
        new Promise((r) => setTimeout(r, 300)),
      ]).then(finish);
    });
    child.stdin.on('error', () => {}); // the program may exit without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs `env ARGS` the way a user does (through the shim), with envbox state in `stateHome`. */
export function env(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliResult> {
  return runProgram(SHIM, args, { ...opts, argv0: 'env', env: { ...process.env, NO_COLOR: '1', ...opts.env } });
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'envbox-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
