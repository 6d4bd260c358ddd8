/** A TCP forward's hand-off hook: connections given to the relay still show in the forward's counters. */
import net from 'node:net';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { TcpForward } from '../../../src/agent/portfwd/tcp.js';

describe('TcpForward hand-off', () => {
  it('counts a handed-over connection open until it ends, with the bytes the taker reports', async () => {
    const ends: ((bytes: { in: number; out: number }) => void)[] = [];
    const dial = vi.fn(() => Promise.reject(new Error('not used')));
    const forward = new TcpForward({ guestIp: '127.0.0.1', guestPort: 80 }, dial, (socket, onEnd) => {
      socket.destroy();
      ends.push(onEnd);
      return true;
    });
    onTestFinished(() => forward.close());
    const port = await forward.listen('127.0.0.1', 0);
    const client = net.connect(port, '127.0.0.1');
    client.on('error', () => {});
    await vi.waitFor(() => expect(ends.length).toBe(1));
    expect(forward.stats()).toEqual({ connections: 1, total: 1, bytesIn: 0, bytesOut: 0 });
    ends[0]!({ in: 10, out: 20 });
    ends[0]!({ in: 10, out: 20 }); // once only
    expect(forward.stats()).toEqual({ connections: 0, total: 1, bytesIn: 10, bytesOut: 20 });
    expect(dial).not.toHaveBeenCalled();
    client.destroy();
  });

  it('dials and relays itself when the hook declines', async () => {
    const guest = net.createServer((s) => s.end('from the guest'));
    await new Promise<void>((resolve) => guest.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => guest.close(() => resolve())));
    const guestPort = (guest.address() as net.AddressInfo).port;
    const forward = new TcpForward(
      { guestIp: '127.0.0.1', guestPort },
      (host, p) =>
        new Promise((resolve, reject) => {
          const s = net.connect(p, host, () => resolve(s));
          s.once('error', reject);
        }),
      () => false,
    );
    onTestFinished(() => forward.close());
    const port = await forward.listen('127.0.0.1', 0);
    const client = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    await new Promise((resolve) => client.once('close', resolve));
    expect(Buffer.concat(chunks).toString()).toBe('from the guest');
    await vi.waitFor(() => expect(forward.stats()).toMatchObject({ connections: 0, total: 1, bytesOut: 14 }));
  });
});
