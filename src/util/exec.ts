import { spawn, type SpawnOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { EnvboxError } from './errors.js';
import { trace, traceOn } from './trace.js';

/** Where `name` is an executable on `path` (the PATH by default), as `command -v` finds it, without a shell; undefined when nowhere. */
export function findOnPath(name: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called with each complete line of stdout/stderr as it arrives (for progress). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Runs a program (never through a shell) and collects its output; never throws for a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const spawnOpts: SpawnOptions = {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: opts.signal,
      timeout: opts.timeoutMs,
    };
    const started = traceOn() ? performance.now() : 0;
    const child = spawn(cmd, args, spawnOpts);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const partial = { stdout: '', stderr: '' };
    const collect = (stream: 'stdout' | 'stderr', sink: Buffer[]) => (chunk: Buffer) => {
      sink.push(chunk);
      if (!opts.onLine) return;
      const text = partial[stream] + chunk.toString('utf8');
      const lines = text.split(/\r?\n|\r/);
      partial[stream] = lines.pop() ?? '';
      for (const line of lines) if (line) opts.onLine(line, stream);
    };
    child.stdout!.on('data', collect('stdout', out));
    child.stderr!.on('data', collect('stderr', err));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        reject(new EnvboxError('COMMAND_MISSING', `${cmd} is not installed`, { hint: `install it (see env doctor)` }));
      } else reject(e);
    });
    child.on('close', (code, signal) => {
      if (started) trace(`ran ${cmd} ${args.join(' ')} (${(performance.now() - started).toFixed(0)} ms, exit ${code ?? signal})`);
      if (opts.onLine) for (const s of ['stdout', 'stderr'] as const) if (partial[s]) opts.onLine(partial[s], s);
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.input ?? '');
  });
}

/** Runs a program and throws an EnvboxError (code `code`) quoting its stderr when it fails. */
export async function runOk(
  cmd: string,
  args: readonly string[],
  opts: RunOptions & { code?: string; what?: string; hint?: string } = {},
): Promise<RunResult> {
  const result = await run(cmd, args, opts);
  if (result.code !== 0) {
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-8).join('\n');
    throw new EnvboxError(
      opts.code ?? 'COMMAND_FAILED',
      `${opts.what ?? `${cmd} ${args.join(' ')}`} failed (exit ${result.code})${tail ? `:\n${tail}` : ''}`,
      { hint: opts.hint },
    );
  }
  return result;
}
