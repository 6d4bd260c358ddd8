/**
 * An acknowledged, ordered queue of batches to the guest. Nothing is fire-and-forget: a batch
 * leaves the queue only when the guest has answered it. Up to `window` batches are in flight at
 * once (the guest handles requests in order, so they need not wait for each other). When the
 * channel fails, every batch not yet acknowledged is kept and the queue pauses until `resume()`
 * gives it a new channel; then they are sent again, in order. A batch the guest answered with an
 * error (a path that vanished, a permission) is acknowledged and reported, not retried forever.
 */
import { GuestOpError } from './ops.js';

export interface Batch<T> {
  seq: number;
  item: T;
  /** When the oldest host event in it happened (ms since the epoch), for the replay lag. */
  since: number;
}

export class AckQueue<T> {
  private readonly queue: Batch<T>[] = [];
  private inFlight = 0;
  /** Bumped on every failure/resume, so answers from a dead channel are ignored. */
  private epoch = 0;
  private send: ((item: T) => Promise<void>) | undefined;
  private seq = 0;
  private waiters: (() => void)[] = [];
  lastLagMs: number | undefined;
  sent = 0;
  resent = 0;

  constructor(
    private readonly opts: {
      window: number;
      onError(err: Error, item: T): void;
      onDown(err: Error): void;
      now?: () => number;
    },
  ) {}

  get pending(): number {
    return this.queue.length;
  }

  /** How long the oldest unacknowledged batch has waited (0 when none). */
  lagMs(): number {
    const first = this.queue[0];
    return first ? this.now() - first.since : 0;
  }

  get paused(): boolean {
    return this.send === undefined;
  }

  push(item: T, since = this.now()): void {
    this.queue.push({ seq: ++this.seq, item, since });
    this.pump();
  }

  /** A (new) channel: every unacknowledged batch is (re)sent from the first. */
  resume(send: (item: T) => Promise<void>): void {
    this.epoch++;
    this.send = send;
    if (this.inFlight > 0) this.resent += this.inFlight;
    this.inFlight = 0;
    this.pump();
  }

  pause(): void {
    this.epoch++;
    this.send = undefined;
    this.inFlight = 0;
  }

  /** Resolves once every batch pushed so far has been acknowledged. */
  drained(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    const target = this.queue[this.queue.length - 1]!.seq;
    return new Promise((resolve) => {
      const check = () => {
        if (this.queue.length === 0 || this.queue[0]!.seq > target) resolve();
        else this.waiters.push(check);
      };
      check();
    });
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private pump(): void {
    while (this.send && this.inFlight < this.opts.window && this.inFlight < this.queue.length) {
      const batch = this.queue[this.inFlight]!;
      const epoch = this.epoch;
      this.inFlight++;
      this.sent++;
      this.send(batch.item).then(
        () => this.acked(epoch, batch),
        (err: Error) => {
          if (epoch !== this.epoch) return;
          if (err instanceof GuestOpError) {
            this.opts.onError(err, batch.item);
            this.acked(epoch, batch);
            return;
          }
          this.pause();
          this.opts.onDown(err);
        },
      );
    }
  }

  private acked(epoch: number, batch: Batch<T>): void {
    if (epoch !== this.epoch) return;
    // Answers come in order; an answer for a batch that is not first means the ones before it are done too.
    const i = this.queue.indexOf(batch);
    if (i < 0) return;
    this.queue.splice(0, i + 1);
    this.inFlight -= i + 1;
    this.lastLagMs = this.now() - batch.since;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
    this.pump();
  }
}
