import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { HostListener, type RelayHost } from '../../../src/agent/host-listener.js';
import type { RelayListener } from '../../../src/native/netns.js';

const request = { kind: 'forward' as const, host: '127.0.0.1', port: 80 };
const answering = (text: string) => () => net.createServer((socket) => socket.end(text));

async function read(port: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
  await once(socket, 'close');
  return text;
}

function fakeRelay(): RelayHost & { served: RelayListener[]; withdrawn: RelayListener[] } {
  const served: RelayListener[] = [];
  const withdrawn: RelayListener[] = [];
  return { served, withdrawn, serve: (l) => void served.push(l), unserve: (l) => void withdrawn.push(l) };
}

describe('HostListener', () => {
  it('serves here until a relay takes it, offers itself once and withdraws on close', async () => {
    const listener = new HostListener(request, answering('here'));
    const port = await listener.listen({ host: '127.0.0.1', port: 0 });
    expect(listener.port).toBe(port);
    expect(await read(port)).toBe('here');
    const relay = fakeRelay();
    listener.offer(relay);
    listener.offer(relay);
    expect(relay.served).toEqual([listener]);
    expect(listener.handle()).toBeTypeOf('object');
    expect(listener.servedByRelay).toBe(false);
    // Nothing was taken: a relay going away leaves it serving here.
    listener.released();
    expect(await read(port)).toBe('here');
    await listener.close();
    expect(relay.withdrawn).toEqual([listener]);
    expect(listener.handle()).toBeUndefined();
    const refused = net.connect(port, '127.0.0.1');
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
  });

  it('rejects with the bind error when the port is taken', async () => {
    const first = new HostListener(request, answering('first'));
    const port = await first.listen({ host: '127.0.0.1', port: 0 });
    const second = new HostListener(request, answering('second'));
    await expect(second.listen({ host: '127.0.0.1', port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(second.handle()).toBeUndefined();
    await first.close();
    await second.close();
  });

  it("adds up the relays' figures: what a relay served stays counted after it goes, its open connections do not", () => {
    const listener = new HostListener(request, answering(''));
    expect(listener.relayCounts()).toEqual({ active: 0, total: 0, in: 0, out: 0 });
    listener.counted({ active: 2, total: 5, in: 10, out: 20 });
    expect(listener.relayCounts()).toEqual({ active: 2, total: 5, in: 10, out: 20 });
    listener.released();
    expect(listener.relayCounts()).toEqual({ active: 0, total: 5, in: 10, out: 20 });
    listener.counted({ active: 1, total: 1, in: 1, out: 2 });
    expect(listener.relayCounts()).toEqual({ active: 1, total: 6, in: 11, out: 22 });
  });
});
