/**
 * The SOCKS server's hand-off hook: on the netns fast path every accepted client goes to the
 * relay (which speaks SOCKS5 itself) unread; when the hook declines, the server serves it as usual.
 */
import net from 'node:net';
import { SocksClient } from 'socks';
import { describe, expect, it, vi } from 'vitest';
import { startEcho, startProxy } from './peers.js';

describe('handing clients over', () => {
  it('gives every client away unread and counts it active until the taker says it ended', async () => {
    const taken: { socket: net.Socket; onEnd: () => void; unread: number }[] = [];
    const proxy = await startProxy({
      handoff: (socket, onEnd) => {
        taken.push({ socket, onEnd, unread: socket.readableLength });
        return true;
      },
    });
    const clients = [net.connect(proxy.port, '127.0.0.1'), net.connect(proxy.port, '127.0.0.1')];
    for (const client of clients) {
      client.on('error', () => {});
      client.write(Buffer.from([5, 1, 0]));
    }
    await vi.waitFor(() => expect(taken.length).toBe(2));
    expect(proxy.server.stats()).toEqual({ active: 2, total: 2, refused: 0 });
    // Nothing was read (the greeting waits in the kernel for whoever takes the socket) or dialed.
    expect(taken.map((t) => t.unread)).toEqual([0, 0]);
    expect(proxy.dialed).toEqual([]);
    taken[0]!.onEnd();
    taken[0]!.onEnd(); // a second call changes nothing
    expect(proxy.server.stats().active).toBe(1);
    taken[1]!.onEnd();
    expect(proxy.server.stats().active).toBe(0);
    for (const t of taken) t.socket.destroy();
    for (const client of clients) client.destroy();
  });

  it('serves the client itself when the hook declines', async () => {
    const echo = await startEcho();
    const offered: net.Socket[] = [];
    const proxy = await startProxy({ handoff: (socket) => (offered.push(socket), false) });
    const { socket } = await SocksClient.createConnection({
      proxy: { host: '127.0.0.1', port: proxy.port, type: 5 },
      command: 'connect',
      destination: { host: 'app.guest', port: echo },
    });
    socket.write('served here');
    const [chunk] = (await new Promise((resolve) => socket.once('data', (...args) => resolve(args)))) as [Buffer];
    socket.destroy();
    expect(chunk.toString()).toBe('served here');
    expect(offered.length).toBe(1);
    expect(proxy.dialed.map((t) => t.host)).toEqual(['app.guest']);
    await vi.waitFor(() => expect(proxy.server.stats()).toEqual({ active: 0, total: 1, refused: 0 }));
  });

  it('counts handed clients against the connection limit', async () => {
    const held: net.Socket[] = [];
    const proxy = await startProxy({ maxConnections: 1, handoff: (socket) => (held.push(socket), true) });
    const first = net.connect(proxy.port, '127.0.0.1');
    await vi.waitFor(() => expect(held.length).toBe(1));
    const second = net.connect(proxy.port, '127.0.0.1');
    second.on('error', () => {});
    await new Promise((resolve) => second.once('close', resolve));
    expect(proxy.server.stats()).toEqual({ active: 1, total: 1, refused: 1 });
    first.destroy();
    for (const s of held) s.destroy();
  });
});
