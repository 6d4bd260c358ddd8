import { describe, expect, it } from 'vitest';
import { GuestOpError } from '../../../src/sync/ops.js';
import { AckQueue } from '../../../src/sync/queue.js';

interface Sent {
  item: number;
  resolve(): void;
  reject(err: Error): void;
}

function harness(window = 2) {
  const sent: Sent[] = [];
  const errors: number[] = [];
  const downs: string[] = [];
  const queue = new AckQueue<number>({ window, onError: (_e, item) => errors.push(item), onDown: (e) => downs.push(e.message) });
  const send = (item: number) => new Promise<void>((resolve, reject) => sent.push({ item, resolve, reject }));
  return { queue, sent, errors, downs, send };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('acknowledged batch queue', () => {
  it('holds batches until a channel is there, then sends them in order within the window', async () => {
    const h = harness(2);
    h.queue.push(1);
    h.queue.push(2);
    h.queue.push(3);
    expect(h.sent).toEqual([]);
    expect(h.queue.pending).toBe(3);
    h.queue.resume(h.send);
    expect(h.sent.map((s) => s.item)).toEqual([1, 2]);
    h.sent[0]!.resolve();
    await tick();
    expect(h.sent.map((s) => s.item)).toEqual([1, 2, 3]);
    expect(h.queue.pending).toBe(2);
  });

  it('keeps unacknowledged batches when the channel fails and sends them again after resume', async () => {
    const h = harness(3);
    h.queue.resume(h.send);
    for (const n of [1, 2, 3, 4]) h.queue.push(n);
    h.sent[0]!.resolve();
    await tick();
    h.sent[1]!.reject(new Error('channel closed'));
    await tick();
    expect(h.downs).toEqual(['channel closed']);
    expect(h.queue.paused).toBe(true);
    // A late answer from the dead channel changes nothing.
    h.sent[2]!.resolve();
    await tick();
    expect(h.queue.pending).toBe(3);
    h.sent.length = 0;
    h.queue.resume(h.send);
    expect(h.sent.map((s) => s.item)).toEqual([2, 3, 4]);
    for (const s of h.sent) s.resolve();
    await tick();
    expect(h.queue.pending).toBe(0);
    expect(h.queue.resent).toBe(0);
  });

  it('acknowledges a batch the guest refused, reports it, and goes on', async () => {
    const h = harness(1);
    h.queue.resume(h.send);
    h.queue.push(1);
    h.queue.push(2);
    h.sent[0]!.reject(new GuestOpError(2, 'ENOENT'));
    await tick();
    expect(h.errors).toEqual([1]);
    expect(h.sent.map((s) => s.item)).toEqual([1, 2]);
    expect(h.queue.paused).toBe(false);
  });

  it('drained() waits for everything pushed before it, not after', async () => {
    const h = harness(4);
    h.queue.resume(h.send);
    h.queue.push(1);
    let done = false;
    const drained = h.queue.drained().then(() => (done = true));
    h.queue.push(2);
    await tick();
    expect(done).toBe(false);
    h.sent[0]!.resolve();
    await drained;
    expect(done).toBe(true);
    expect(h.queue.pending).toBe(1);
  });

  it('measures the lag of the oldest pending batch and of the last acknowledged one', async () => {
    let now = 1000;
    const sent: (() => void)[] = [];
    const queue = new AckQueue<number>({ window: 1, onError: () => {}, onDown: () => {}, now: () => now });
    queue.push(1, 900);
    expect(queue.lagMs()).toBe(100);
    queue.resume(() => new Promise<void>((r) => sent.push(r)));
    now = 1050;
    sent[0]!();
    await tick();
    expect(queue.lastLagMs).toBe(150);
    expect(queue.lagMs()).toBe(0);
  });
});
