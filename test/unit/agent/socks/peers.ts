/**
 * Real loopback peers for the SOCKS tests: a proxy with a net.connect dialer, echo and HTTP
 * servers standing in for guest services, and a raw client that reads exact byte counts.
 * Everything started here is closed by onTestFinished, also when the test fails.
 */
import http from 'node:http';
import net from 'node:net';
import { onTestFinished } from 'vitest';
import {
  createSocksServer,
  RELAY_BUFFER_BYTES,
  type Dialer,
  type SocksServer,
  type SocksServerOptions,
  type Target,
} from '../../../../src/agent/socks/server.js';

/** Names the "guest" resolves; the host never could, which proves they reach the dialer as-is. */
export const GUEST_NAMES: Record<string, string> = { 'app.guest': '127.0.0.1', 'app6.guest': '::1' };

export interface Proxy {
  server: SocksServer;
  port: number;
  dialed: Target[];
  sockets: net.Socket[];
}

/** Dials on loopback the way the agent's namespace dialer will: connected before it resolves. */
export function loopbackDialer(dialed: Target[], sockets: net.Socket[]): Dialer {
  return (target, signal) =>
    new Promise((resolve, reject) => {
      dialed.push(target);
      const host = target.kind === 'domain' ? GUEST_NAMES[target.host] : target.host;
      if (host === undefined) {
        return reject(Object.assign(new Error(`no guest name ${target.host}`), { code: 'ENOTFOUND' }));
      }
      // Node 20 honours highWaterMark here but @types/node 20 does not list it yet.
      const options = { host, port: target.port, signal, highWaterMark: RELAY_BUFFER_BYTES };
      const socket = net.connect(options);
      sockets.push(socket);
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    });
}

export async function startProxy(options: Partial<SocksServerOptions> = {}): Promise<Proxy> {
  const dialed: Target[] = [];
  const sockets: net.Socket[] = [];
  const server = createSocksServer({ dial: loopbackDialer(dialed, sockets), ...options });
  onTestFinished(() => server.close());
  const port = await server.listen(0);
  return { server, port, dialed, sockets };
}

async function listen(server: net.Server, host: string): Promise<number> {
  const connections = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        connections.forEach((socket) => socket.destroy());
      }),
  );
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  return (server.address() as net.AddressInfo).port;
}

/** A guest service that echoes, keeping its half open until the client half-closes. */
export function startEcho(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  return listen(server, host);
}

export function startHttp(host = '127.0.0.1'): Promise<number> {
  const server = http.createServer((req, res) => res.end(`hello from the guest: ${req.url}`));
  return listen(server, host);
}

export interface RawClient {
  socket: net.Socket;
  /** Resolves with exactly n bytes, or rejects if the server closes first. */
  read(n: number): Promise<Buffer>;
  /** Resolves with whatever arrived once the server has closed the connection. */
  closed(): Promise<Buffer>;
}

export async function rawClient(port: number): Promise<RawClient> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  onTestFinished(() => void socket.destroy());
  socket.on('error', () => {});
  let buffered = Buffer.alloc(0);
  let ended = false;
  let wake = (): void => {};
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    wake();
  });
  socket.once('close', () => {
    ended = true;
    wake();
  });
  const until = async (done: () => boolean): Promise<void> => {
    while (!done()) await new Promise<void>((resolve) => (wake = resolve));
  };
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return {
    socket,
    async read(n) {
      await until(() => buffered.length >= n || ended);
      if (buffered.length < n) throw new Error(`connection closed after ${buffered.length} of ${n} bytes`);
      const out = buffered.subarray(0, n);
      buffered = buffered.subarray(n);
      return out;
    },
    async closed() {
      await until(() => ended);
      return buffered;
    },
  };
}

/** CONNECT request bytes for an IPv4 or domain target. */
export function connectRequest(host: string, port: number, command = 0x01): Buffer {
  const portBytes = [port >> 8, port & 0xff];
  if (net.isIPv4(host)) return Buffer.from([5, command, 0, 1, ...host.split('.').map(Number), ...portBytes]);
  return Buffer.concat([Buffer.from([5, command, 0, 3, host.length]), Buffer.from(host), Buffer.from(portBytes)]);
}

/** A failure reply: the code, then the unspecified bound address 0.0.0.0:0. */
export function failureReply(code: number): Buffer {
  return Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
}
