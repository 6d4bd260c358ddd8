import { constants } from 'node:os';
import { Writable, type Readable } from 'node:stream';
import type { Client, ClientChannel, PseudoTtyOptions } from 'ssh2';
import { EnvboxError } from '../util/errors.js';
import { connectionError } from './connect.js';
import { withEnv } from './quote.js';

export interface PtySize {
  rows: number;
  cols: number;
  term: string;
}

export interface ExecIO {
  /** Sent to the command; its end is the command's EOF. Without it the command sees EOF at once. */
  stdin?: Readable | null;
  stdout: Writable;
  stderr: Writable;
  pty?: boolean | PtySize;
  /** Set in the command's environment (sshd drops `env` requests outside its AcceptEnv, so they are exported). */
  env?: Record<string, string>;
}

export { shellQuote, withEnv } from './quote.js';

/** Runs `command` in the guest, streaming both ways; resolves with its exit status (128+N when killed by signal N). */
export function exec(client: Client, command: string, io: ExecIO): Promise<number> {
  const pty = io.pty === true ? true : io.pty ? toPty(io.pty) : undefined;
  return new Promise<number>((resolve, reject) =>
    client.exec(withEnv(command, io.env), pty ? { pty } : {}, (err, channel) => {
      // Listen in this same callback: a quick command's exit can arrive in the same read as the channel.
      if (err) reject(sessionError(client, err));
      else runSession(client, channel, io).then(resolve, reject);
    }),
  );
}

/** Runs `command` with no input and collects its output (UTF-8). */
export async function execCapture(
  client: Client,
  command: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const code = await exec(client, command, { stdout: collector(out), stderr: collector(err) });
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

export function toPty(size: PtySize): PseudoTtyOptions {
  return { rows: size.rows, cols: size.cols, height: 0, width: 0, term: size.term };
}

/**
 * Pipes an open session channel to local streams until it closes. The caller's stdout/stderr are never
 * ended (they may be the process's own); stdin is unpiped when the command ends, so it is free again.
 */
export function runSession(client: Client, channel: ClientChannel, io: ExecIO): Promise<number> {
  return new Promise((resolve, reject) => {
    let status: number | undefined;
    let open = 2; // the channel's close and its stderr's end: output is complete only after both
    const done = () => {
      if (--open > 0) return;
      io.stdin?.unpipe(channel);
      if (status !== undefined) resolve(status);
      else reject(sessionError(client, new Error('the session closed without an exit status')));
    };
    channel.on('exit', (code: number | null, signal?: string) => {
      status = code ?? signalStatus(signal);
    });
    channel.on('close', done);
    channel.stderr.on('end', done);
    // A write racing the remote close can fail; the exit status (or its absence) is what gets reported.
    channel.on('error', () => {});
    channel.pipe(io.stdout, { end: false });
    channel.stderr.pipe(io.stderr, { end: false });
    if (io.stdin) io.stdin.pipe(channel);
    else channel.end();
  });
}

/** What a shell reports for a command killed by a signal: 128 + its number (255 when unknown, like OpenSSH). */
function signalStatus(signal: string | undefined): number {
  const number = signal ? constants.signals[signal as NodeJS.Signals] : undefined;
  return number === undefined ? 255 : 128 + number;
}

/** A session that could not open or ended without a status, explained by the dropped link when there was one. */
export function sessionError(client: Client, err: Error, what = 'running a command in the guest'): EnvboxError {
  const lost = connectionError(client);
  return new EnvboxError('SSH_SESSION_FAILED', `${what} failed: ${lost?.message ?? err.message}`, {
    hint: 'the guest may have stopped or rebooted; check `env status` and try again',
    cause: lost ?? err,
  });
}

/** A stream that keeps what is written to it in `chunks`. */
export function collector(chunks: Buffer[] = []): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
}
