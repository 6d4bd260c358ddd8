/**
 * The agent's control API: newline-delimited JSON over a unix socket (0600, in a 0700 folder).
 *
 *   request   {"id": 1, "method": "status", "params": {}}
 *   response  {"id": 1, "ok": true, "result": {...}}
 *             {"id": 1, "ok": false, "error": {"code": "UNKNOWN_METHOD", "message": "..."}}
 *
 * A connection may carry several requests; answers come in order. Handlers answer from memory,
 * so a client waits milliseconds even while the agent is reconnecting to its guest; the client
 * still gives up after a short timeout so a wedged agent can never hang the CLI.
 */
import { chmodSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import { basename, dirname } from 'node:path';
import { EnvboxError } from '../util/errors.js';

export type ControlHandler = (method: string, params: Record<string, unknown>) => unknown;

// Requests are tiny; a line this long is garbage or abuse, and the connection is dropped.
const MAX_LINE_BYTES = 64 * 1024;
// sockaddr_un.sun_path holds 107 bytes and a NUL.
const MAX_SOCKET_PATH_BYTES = 107;
const dirFds = new Map<string, number>();

/**
 * A path the kernel accepts for a unix socket. A deep state folder (a long env name under a long
 * home) can pass sun_path's 107 bytes; then the folder is reached through an open descriptor
 * (/proc/self/fd/N/agent.sock), which resolves to the same socket file.
 */
export function socketAddress(path: string): string {
  if (Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES) return path;
  const dir = dirname(path);
  let fd = dirFds.get(dir);
  if (fd === undefined) {
    fd = openSync(dir, 'r');
    dirFds.set(dir, fd);
  }
  return `/proc/self/fd/${fd}/${basename(path)}`;
}

export interface ControlServer {
  close(): Promise<void>;
}

export async function serveControl(path: string, handle: ControlHandler): Promise<ControlServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let pending = '';
    let queue = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      pending += text;
      if (pending.length > MAX_LINE_BYTES && !pending.includes('\n')) return void socket.destroy();
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (!line.trim()) continue;
        queue = queue.then(async () => {
          const reply = await answer(line, handle);
          if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
        });
      }
    });
  });
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketAddress(path), () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return {
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        rmSync(path, { force: true });
      }),
  };
}

async function answer(line: string, handle: ControlHandler): Promise<Record<string, unknown>> {
  let id: unknown = null;
  try {
    const request = JSON.parse(line) as { id?: unknown; method?: unknown; params?: unknown };
    id = request.id ?? null;
    if (typeof request.method !== 'string') return failure(id, 'BAD_REQUEST', 'a request needs a "method" string');
    const params = request.params && typeof request.params === 'object' ? (request.params as Record<string, unknown>) : {};
    return { id, ok: true, result: (await handle(request.method, params)) ?? null };
  } catch (err) {
    if (err instanceof SyntaxError) return failure(id, 'BAD_REQUEST', 'a request must be one JSON object per line');
    const code = err instanceof EnvboxError ? err.code : 'AGENT_ERROR';
    return failure(id, code, (err as Error).message);
  }
}

const failure = (id: unknown, code: string, message: string) => ({ id, ok: false, error: { code, message } });

/** One request on a fresh connection; rejects with AGENT_UNREACHABLE when nothing answers in time. */
export function requestControl(path: string, method: string, params: Record<string, unknown> = {}, timeoutMs = 2000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const unreachable = (why: string) =>
      new EnvboxError('AGENT_UNREACHABLE', `the env's agent does not answer (${why})`, {
        hint: 'env up (or env status) restarts it; env logs shows what it did last',
      });
    let address: string;
    try {
      address = socketAddress(path);
    } catch (err) {
      return reject(unreachable((err as Error).message));
    }
    const socket = net.connect(address);
    let received = '';
    const timer = setTimeout(() => finish(unreachable(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | undefined, value?: unknown) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 1, method, params })}\n`));
    socket.on('error', (err: NodeJS.ErrnoException) => finish(unreachable(err.code === 'ENOENT' ? 'no control socket' : err.message)));
    socket.on('close', () => finish(unreachable('it closed the connection')));
    socket.on('data', (text: string) => {
      received += text;
      const newline = received.indexOf('\n');
      if (newline < 0) return;
      let reply: { ok?: boolean; result?: unknown; error?: { code?: string; message?: string } };
      try {
        reply = JSON.parse(received.slice(0, newline)) as typeof reply;
      } catch {
        return finish(unreachable('it sent something that is not JSON'));
      }
      if (reply.ok) return finish(undefined, reply.result);
      finish(new EnvboxError(reply.error?.code ?? 'AGENT_ERROR', `the agent says: ${reply.error?.message ?? 'request failed'}`));
    });
  });
}
