import { createConnection, type Socket } from 'node:net';
import { EnvboxError } from '../../util/errors.js';

/**
 * A QMP client: QEMU's JSON control protocol on the env's unix socket. QEMU greets, the client enters
 * command mode with `qmp_capabilities`, then each command gets exactly one reply (matched here by `id`)
 * while asynchronous events (`SHUTDOWN`, `STOP`, …) may arrive in between, one JSON object per line.
 */

type Pending = { resolve: (value: unknown) => void; reject: (err: Error) => void };

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedError: Error | undefined;
  /** Set by connect() before any data can arrive: the greeting resolves it. */
  private greeted: (() => void) | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('QMP connection closed')));
  }

  /** Connects, waits for the greeting and negotiates command mode. */
  static async connect(path: string, timeoutMs = 5_000): Promise<QmpClient> {
    const socket = createConnection(path);
    const client = new QmpClient(socket);
    const greeting = new Promise<void>((resolve, reject) => {
      client.greeted = resolve;
      socket.once('error', reject);
    });
    const timer = setTimeout(() => socket.destroy(new Error(`no QMP greeting within ${timeoutMs} ms`)), timeoutMs);
    try {
      await greeting;
      await client.execute('qmp_capabilities');
      return client;
    } catch (err) {
      socket.destroy();
      throw qmpError(path, err);
    } finally {
      clearTimeout(timer);
    }
  }


  /** Runs a command; resolves with its `return` value, rejects with QEMU's error description. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.handle(line);
    }
  }

  private handle(line: string): void {
    let msg: { QMP?: unknown; return?: unknown; error?: { class?: string; desc?: string }; id?: number; event?: string };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return this.fail(new Error(`QMP sent something that is not JSON: ${line.slice(0, 80)}`));
    }
    if (msg.QMP !== undefined) return this.greeted?.();
    // Events (STOP, SHUTDOWN, …) are not replies; envbox watches the process instead.
    if (typeof msg.event === 'string') return;
    const pending = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
    if (!pending) return;
    this.pending.delete(msg.id!);
    if (msg.error) pending.reject(new Error(`${msg.error.class ?? 'Error'}: ${msg.error.desc ?? 'unknown error'}`));
    else pending.resolve(msg.return);
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

function qmpError(path: string, err: unknown): EnvboxError {
  return new EnvboxError('QMP_FAILED', `could not talk to QEMU on ${path}: ${(err as Error).message}`, {
    hint: 'the VM process may have died; env halt -f && env up restarts it',
    cause: err,
  });
}

/** Connects, runs `fn`, and always closes the connection. */
export async function withQmp<T>(path: string, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(path);
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}
