import net from 'node:net';
import { SocksClient } from 'socks';
import { describe, expect, it, vi } from 'vitest';
import type { SocksEvent } from '../../../../src/agent/socks/server.js';
import { connectRequest, failureReply, loopbackDialer, rawClient, startEcho, startProxy, type Proxy } from './peers.js';

const settled = (proxy: Proxy) => vi.waitFor(() => expect(proxy.server.stats().active).toBe(0));
const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

/** A well-behaved client's round trip, to show the others did not disturb the server. */
async function stillServes(proxy: Proxy, echo: number): Promise<void> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: proxy.port, type: 5, userId: 'dev', password: 'pw' },
    command: 'connect',
    destination: { host: 'app.guest', port: echo },
  });
  socket.write('still here');
  const [chunk] = (await new Promise((resolve) => socket.once('data', (...args) => resolve(args)))) as [Buffer];
  socket.destroy();
  expect(chunk.toString()).toBe('still here');
}

function rejectionReasons(events: SocksEvent[]): unknown[] {
  return events.filter((e) => e.type === 'rejected').map((e) => e.reason);
}

describe('hostile clients', () => {
  it.each([
    ['a SOCKS4 request', Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])],
    ['a greeting with no methods', Buffer.from([5, 0])],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['binary garbage', Buffer.from([0, 0xff, 0x13, 0x37, 0, 0])],
  ])('closes on %s without answering, while others keep working', async (_, bytes) => {
    const echo = await startEcho();
    const proxy = await startProxy({ auth: { username: 'dev', password: 'pw' } });
    const client = await rawClient(proxy.port);
    client.socket.write(bytes);
    expect(await client.closed()).toEqual(Buffer.alloc(0));
    await stillServes(proxy, echo);
    await settled(proxy);
  });

  it('answers an oversized greeting followed by 64 KiB of garbage, then closes', async () => {
    const proxy = await startProxy();
    const client = await rawClient(proxy.port);
    const methods = Array.from({ length: 255 }, (_, i) => i);
    client.socket.write(Buffer.concat([Buffer.from([5, 255, ...methods]), Buffer.alloc(64 << 10, 'A')]));
    expect(await client.closed()).toEqual(Buffer.concat([Buffer.from([5, 0]), failureReply(0x01)]));
    expect(proxy.dialed).toEqual([]);
    await settled(proxy);
  });

  it.each([
    ['greeting', [5, 2, 0]],
    ['credentials', [5, 1, 2, 1, 3, 0x64, 0x65]],
    ['request', [5, 1, 2, 1, 3, ...Buffer.from('dev'), 2, ...Buffer.from('pw'), 5, 1, 0, 3, 9, 0x61]],
  ])('drops a client that disconnects mid-%s', async (_, bytes) => {
    const events: SocksEvent[] = [];
    const proxy = await startProxy({ auth: { username: 'dev', password: 'pw' }, onEvent: (e) => events.push(e) });
    const client = await rawClient(proxy.port);
    client.socket.end(Buffer.from(bytes));
    await client.closed();
    await settled(proxy);
    expect(rejectionReasons(events)).toEqual(['client closed before the relay started']);
    expect(proxy.dialed).toEqual([]);
  });

  it('handles every message split into one-byte packets', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ auth: { username: 'dev', password: 'pw' } });
    const client = await rawClient(proxy.port);
    const script = Buffer.concat([
      Buffer.from([5, 1, 2, 1, 3, ...Buffer.from('dev'), 2, ...Buffer.from('pw')]),
      connectRequest('app.guest', echo),
      Buffer.from('hi'),
    ]);
    for (const byte of script) {
      client.socket.write(Buffer.from([byte]));
      await tick();
    }
    const bound = proxy.sockets[0]!.localPort!;
    const replies = [5, 2, 1, 0, 5, 0, 0, 1, 127, 0, 0, 1, bound >> 8, bound & 0xff];
    expect(await client.read(replies.length)).toEqual(Buffer.from(replies));
    expect((await client.read(2)).toString()).toBe('hi');
    expect(proxy.dialed).toEqual([{ host: 'app.guest', port: echo, kind: 'domain' }]);
  });

  it.each([
    ['before the greeting', [], Buffer.alloc(0)],
    ['inside the greeting', [5], Buffer.alloc(0)],
    ['after the greeting', [5, 1, 0], Buffer.from([5, 0])],
    ['inside the request', [5, 1, 0, 5, 1, 0, 3, 40, 0x61], Buffer.from([5, 0])],
  ])('times out a client stalling %s', async (_, bytes, answered) => {
    const events: SocksEvent[] = [];
    const proxy = await startProxy({ handshakeTimeoutMs: 100, onEvent: (e) => events.push(e) });
    const client = await rawClient(proxy.port);
    client.socket.write(Buffer.from(bytes));
    expect(await client.closed()).toEqual(answered);
    expect(rejectionReasons(events)).toEqual(['handshake timed out']);
    await settled(proxy);
  });

  it('aborts the dial when the client leaves mid-dial and destroys the stream that arrives late', async () => {
    const echo = await startEcho();
    let signal: AbortSignal | undefined;
    let deliver: (stream: net.Socket) => void = () => {};
    const proxy = await startProxy({
      dial: (_, s) => {
        signal = s;
        return new Promise((resolve) => (deliver = resolve));
      },
    });
    const client = await rawClient(proxy.port);
    client.socket.write(Buffer.concat([Buffer.from([5, 1, 0]), connectRequest('app.guest', echo)]));
    await vi.waitFor(() => expect(signal).toBeDefined());
    client.socket.destroy();
    await vi.waitFor(() => expect(signal!.aborted).toBe(true));
    const late = net.connect({ host: '127.0.0.1', port: echo });
    await new Promise((resolve) => late.once('connect', resolve));
    deliver(late);
    await vi.waitFor(() => expect(late.destroyed).toBe(true));
    await settled(proxy);
  });

  it('destroys a stream from a dialer that ignored the abort and answered after the timeout', async () => {
    const echo = await startEcho();
    const dialed: never[] = [];
    const sockets: net.Socket[] = [];
    const dial = loopbackDialer(dialed, sockets);
    const proxy = await startProxy({
      connectTimeoutMs: 50,
      dial: (target) =>
        new Promise((resolve) => setTimeout(() => resolve(dial(target, new AbortController().signal)), 150)),
    });
    const client = await rawClient(proxy.port);
    client.socket.write(Buffer.concat([Buffer.from([5, 1, 0]), connectRequest('app.guest', echo)]));
    expect(await client.closed()).toEqual(Buffer.concat([Buffer.from([5, 0]), failureReply(0x06)]));
    await vi.waitFor(() => expect(sockets[0]?.destroyed).toBe(true));
    await settled(proxy);
  });

  it('refuses connections beyond maxConnections and serves again once one leaves', async () => {
    const echo = await startEcho();
    const events: SocksEvent[] = [];
    const proxy = await startProxy({
      maxConnections: 3,
      auth: { username: 'dev', password: 'pw' },
      onEvent: (e) => events.push(e),
    });
    const idle = await Promise.all([1, 2, 3].map(() => rawClient(proxy.port)));
    await vi.waitFor(() => expect(proxy.server.stats().active).toBe(3));
    const flood = await Promise.all([1, 2, 3, 4, 5].map(() => rawClient(proxy.port)));
    for (const client of flood) expect(await client.closed()).toEqual(Buffer.alloc(0));
    expect(proxy.server.stats()).toEqual({ active: 3, total: 3, refused: 5 });
    expect(events.filter((e) => e.type === 'refused')).toHaveLength(5);
    idle[0]!.socket.destroy();
    await vi.waitFor(() => expect(proxy.server.stats().active).toBe(2));
    await stillServes(proxy, echo);
    idle.forEach((client) => client.socket.destroy());
    await settled(proxy);
  });

  it('serves a well-behaved client through a crowd of hostile ones and leaks nothing', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ handshakeTimeoutMs: 200, auth: { username: 'dev', password: 'pw' } });
    const crowd = await Promise.all(Array.from({ length: 40 }, () => rawClient(proxy.port)));
    crowd.forEach((client, i) => {
      const kind = i % 4;
      if (kind === 0) client.socket.write(Buffer.from([5])); // stalls until the timeout
      if (kind === 1) client.socket.write(Buffer.from([4, 1, 0, 80]));
      if (kind === 2) client.socket.end(Buffer.from([5, 1, 2, 1]));
      if (kind === 3) client.socket.write(Buffer.from([5, 1, 2, 1, 3, 0x64, 0x65, 0x76, 1, 0x78]));
    });
    await stillServes(proxy, echo);
    await Promise.all(crowd.map((client) => client.closed()));
    await settled(proxy);
    expect(proxy.server.stats()).toMatchObject({ active: 0, total: 41 });
  });
});
