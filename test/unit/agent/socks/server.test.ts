import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { SocksClient } from 'socks';
import { describe, expect, it, vi } from 'vitest';
import { createSocksServer, DialError, type DialErrorKind } from '../../../../src/agent/socks/server.js';
import { connectRequest, failureReply, rawClient, startEcho, startProxy, type Proxy } from './peers.js';

async function socksConnect(proxy: Proxy, host: string, port: number, auth?: { userId: string; password: string }) {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: proxy.port, type: 5, ...auth },
    command: 'connect',
    destination: { host, port },
    timeout: 5_000,
  });
  socket.on('error', () => {});
  return socket;
}

/** Writes, then collects everything the peer sends until it closes. */
async function exchange(socket: net.Socket, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => socket.once('end', resolve));
  socket.end(payload);
  await ended;
  socket.destroy();
  return Buffer.concat(chunks);
}

const settled = (proxy: Proxy) => vi.waitFor(() => expect(proxy.server.stats().active).toBe(0));

describe('SOCKS5 CONNECT through the real socks client', () => {
  it.each([
    ['IPv4', '127.0.0.1', '127.0.0.1', { host: '127.0.0.1', kind: 'ipv4' }],
    ['IPv6', '::1', '::1', { host: '::1', kind: 'ipv6' }],
    ['a domain the host cannot resolve', '127.0.0.1', 'app.guest', { host: 'app.guest', kind: 'domain' }],
    ['an IPv6 guest name', '::1', 'app6.guest', { host: 'app6.guest', kind: 'domain' }],
  ])('relays to %s', async (_, listenOn, destination, target) => {
    const echo = await startEcho(listenOn);
    const proxy = await startProxy();
    const socket = await socksConnect(proxy, destination, echo);
    expect((await exchange(socket, Buffer.from('ping'))).toString()).toBe('ping');
    expect(proxy.dialed).toEqual([{ ...target, port: echo }]);
    await settled(proxy);
    expect(proxy.server.stats()).toEqual({ active: 0, total: 1, refused: 0 });
  });

  it('carries 8 MiB both ways intact, with backpressure', async () => {
    const echo = await startEcho();
    const proxy = await startProxy();
    const payload = randomBytes(8 << 20);
    const socket = await socksConnect(proxy, 'app.guest', echo);
    const back = await exchange(socket, payload);
    expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
    await settled(proxy);
  });

  it('forwards data sent in the same packet as the request and answers with the bound address', async () => {
    const echo = await startEcho();
    const proxy = await startProxy();
    const client = await rawClient(proxy.port);
    const greeting = Buffer.from([5, 1, 0]);
    client.socket.write(Buffer.concat([greeting, connectRequest('127.0.0.1', echo), Buffer.from('early')]));
    expect(await client.read(2)).toEqual(Buffer.from([5, 0]));
    const reply = await client.read(10);
    const dialed = proxy.sockets[0]!;
    expect(reply).toEqual(
      Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, dialed.localPort! >> 8, dialed.localPort! & 0xff]),
    );
    expect((await client.read(5)).toString()).toBe('early');
    client.socket.end();
    expect((await client.closed()).length).toBe(0);
    await settled(proxy);
  });

  it('keeps the reply flowing after the client half-closes', async () => {
    const slowEcho = net.createServer({ allowHalfOpen: true }, (socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('end', () => setImmediate(() => socket.end(Buffer.concat([Buffer.from('got: '), ...chunks]))));
    });
    await new Promise<void>((resolve) => slowEcho.listen(0, '127.0.0.1', resolve));
    try {
      const proxy = await startProxy();
      const socket = await socksConnect(proxy, '127.0.0.1', (slowEcho.address() as net.AddressInfo).port);
      expect((await exchange(socket, Buffer.from('question'))).toString()).toBe('got: question');
      await settled(proxy);
    } finally {
      await new Promise((resolve) => slowEcho.close(resolve));
    }
  });

  it('close() drops live relays', async () => {
    const echo = await startEcho();
    const proxy = await startProxy();
    const socket = await socksConnect(proxy, 'app.guest', echo);
    const closed = new Promise((resolve) => socket.once('close', resolve));
    expect(proxy.server.stats().active).toBe(1);
    await proxy.server.close();
    await closed;
    expect(proxy.server.stats().active).toBe(0);
    await vi.waitFor(() => expect(proxy.sockets[0]!.destroyed).toBe(true));
  });
});

describe('reply codes', () => {
  async function replyTo(proxy: Proxy, request: Buffer): Promise<Buffer> {
    const client = await rawClient(proxy.port);
    client.socket.write(Buffer.from([5, 1, 0]));
    expect(await client.read(2)).toEqual(Buffer.from([5, 0]));
    client.socket.write(request);
    return client.closed();
  }

  it.each<[DialErrorKind, number]>([
    ['failure', 0x01],
    ['network', 0x03],
    ['unreachable', 0x04],
    ['dns', 0x04],
    ['refused', 0x05],
    ['timeout', 0x06],
  ])('answers DialError %s with 0x0%i', async (kind, code) => {
    const proxy = await startProxy({ dial: async () => Promise.reject(new DialError(kind, 'from the guest')) });
    expect(await replyTo(proxy, connectRequest('app.guest', 80))).toEqual(failureReply(code));
    await settled(proxy);
  });

  it.each([
    ['a closed port (ECONNREFUSED)', 0x05, () => connectRequest('127.0.0.1', 1)],
    ['a name the guest cannot resolve (ENOTFOUND)', 0x04, () => connectRequest('nowhere.guest', 80)],
    ['BIND', 0x07, () => connectRequest('127.0.0.1', 80, 0x02)],
    ['UDP ASSOCIATE', 0x07, () => connectRequest('127.0.0.1', 80, 0x03)],
    ['address type 0x05', 0x08, () => Buffer.from([5, 1, 0, 5, 1, 2, 3, 4, 0, 80])],
  ])('answers %s with 0x0%i', async (_, code, request) => {
    const proxy = await startProxy();
    expect(await replyTo(proxy, request())).toEqual(failureReply(code));
    await settled(proxy);
  });

  it('answers an error without a known kind with 0x01', async () => {
    const proxy = await startProxy({ dial: () => Promise.reject(new Error('bug in a dialer')) });
    expect(await replyTo(proxy, connectRequest('app.guest', 80))).toEqual(failureReply(0x01));
  });

  it('aborts a dial past connectTimeoutMs and answers 0x06', async () => {
    const signals: AbortSignal[] = [];
    const proxy = await startProxy({
      connectTimeoutMs: 50,
      dial: (_, signal) => {
        signals.push(signal);
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      },
    });
    expect(await replyTo(proxy, connectRequest('app.guest', 80))).toEqual(failureReply(0x06));
    expect(signals[0]!.aborted).toBe(true);
    await settled(proxy);
  });
});

describe('username/password authentication', () => {
  const auth = { username: 'dev', password: 's3cret' };

  it('lets the right credentials through', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ auth });
    const socket = await socksConnect(proxy, 'app.guest', echo, { userId: 'dev', password: 's3cret' });
    expect((await exchange(socket, Buffer.from('ping'))).toString()).toBe('ping');
  });

  it.each([
    ['a wrong password', 'dev', 'nope'],
    ['a wrong username', 'root', 's3cret'],
    ['an empty username', '', 's3cret'],
  ])('answers %s with status 0x01 and closes', async (_, user, password) => {
    const proxy = await startProxy({ auth });
    const client = await rawClient(proxy.port);
    client.socket.write(Buffer.from([5, 2, 0, 2]));
    expect(await client.read(2)).toEqual(Buffer.from([5, 2]));
    client.socket.write(Buffer.from([1, user.length, ...Buffer.from(user), password.length, ...Buffer.from(password)]));
    expect(await client.closed()).toEqual(Buffer.from([1, 1]));
    expect(proxy.dialed).toEqual([]);
    await settled(proxy);
  });

  it('answers a client offering only no-auth with 0xFF and closes', async () => {
    const proxy = await startProxy({ auth });
    const client = await rawClient(proxy.port);
    client.socket.write(Buffer.from([5, 1, 0]));
    expect(await client.closed()).toEqual(Buffer.from([5, 0xff]));
    await settled(proxy);
  });

  it('answers a client offering only username/password to a no-auth server with 0xFF', async () => {
    const proxy = await startProxy();
    const client = await rawClient(proxy.port);
    client.socket.write(Buffer.from([5, 1, 2]));
    expect(await client.closed()).toEqual(Buffer.from([5, 0xff]));
  });

  it('makes the socks client fail on a wrong password', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ auth });
    await expect(socksConnect(proxy, 'app.guest', echo, { userId: 'dev', password: 'wrong' })).rejects.toThrow(
      /authentication failed/i,
    );
  });

  it('refuses credentials a client could never send', () => {
    const dial = () => Promise.reject(new Error('unused'));
    expect(() => createSocksServer({ dial, auth: { username: 'dev', password: 'x'.repeat(256) } })).toThrow(
      'SOCKS password must be 1–255 bytes, got 256',
    );
    expect(() => createSocksServer({ dial, auth: { username: '', password: 'pw' } })).toThrow(
      'SOCKS username must be 1–255 bytes, got 0',
    );
  });
});
