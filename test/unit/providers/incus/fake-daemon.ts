import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A stand-in for the daemon at the provider boundary: an HTTP server on a unix socket in a temp
 * folder, answering with whatever the test's handler says. It records every request.
 */

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export type Handler = (req: SeenRequest, res: ServerResponse) => void | Promise<void>;

export const sync = (metadata: unknown) => ({ type: 'sync', status: 'Success', status_code: 200, error_code: 0, error: '', metadata });
export const asyncOp = (id: string) => ({ type: 'async', status: 'Operation created', status_code: 100, operation: `/1.0/operations/${id}`, metadata: { id, status: 'Running', status_code: 103 } });
export const failure = (code: number, error: string) => ({ type: 'error', error_code: code, error, metadata: null });

export function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(text);
}

export interface FakeDaemon {
  socket: string;
  requests: SeenRequest[];
  close(): Promise<void>;
}

export async function fakeDaemon(handler: Handler): Promise<FakeDaemon> {
  const dir = await mkdtemp(join(tmpdir(), 'envbox-fake-incus-'));
  const socket = join(dir, 'unix.socket');
  const requests: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      requests.push(seen);
      Promise.resolve(handler(seen, res)).catch((err: Error) => reply(res, 500, failure(500, err.message)));
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
