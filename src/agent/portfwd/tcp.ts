/**
 * A TCP forward's host side: a listener on hostIp:hostPort that hands each connection to the guest
 * through `dial` and relays bytes both ways. The listener stays bound while the guest link is down;
 * connections made then are closed at once (the dial fails fast), never left hanging. On the fast
 * path the netns relay takes the listener itself (host-listener.ts) and none of this runs.
 */
import net from 'node:net';
import { pipeline, type Duplex } from 'node:stream';
import { HostListener, type RelayHost } from '../host-listener.js';
import { RELAY_BUFFER_BYTES } from '../socks/dial.js';
import type { ForwardCounters } from './spec.js';

export type GuestDial = (host: string, port: number, signal?: AbortSignal) => Promise<Duplex>;
/** Gives an accepted socket to someone who serves it entirely (the netns relay); false when it can't. */
export type Handoff = (socket: net.Socket, onEnd: (bytes: { in: number; out: number }) => void, closing: AbortSignal) => boolean;

// A guest that accepts nothing within this is treated as refusing.
const DIAL_TIMEOUT_MS = 10_000;

/**
 * Byte and connection counts for a set of relayed host-side sockets, open and closed. "In" is what
 * the side that connected sent: a host client's bytes for a forward, a guest client's for a
 * reverse forward (whose host socket is the one we opened, hence `reverse`).
 */
export class Counters {
  private readonly open = new Set<net.Socket>();
  private closed = { total: 0, bytesIn: 0, bytesOut: 0 };
  private handed = 0;

  constructor(private readonly reverse = false) {}

  track(socket: net.Socket): void {
    this.open.add(socket);
    this.closed.total++;
    socket.once('close', () => {
      this.open.delete(socket);
      const [bytesIn, bytesOut] = this.bytes(socket);
      this.closed.bytesIn += bytesIn;
      this.closed.bytesOut += bytesOut;
    });
  }

  /** A connection served elsewhere (handed to the relay): counted open until the callback. */
  handedOff(): (bytes: { in: number; out: number }) => void {
    this.handed++;
    this.closed.total++;
    let done = false;
    return (bytes) => {
      if (done) return;
      done = true;
      this.handed--;
      this.closed.bytesIn += this.reverse ? bytes.out : bytes.in;
      this.closed.bytesOut += this.reverse ? bytes.in : bytes.out;
    };
  }

  snapshot(): ForwardCounters {
    let bytesIn = this.closed.bytesIn;
    let bytesOut = this.closed.bytesOut;
    for (const s of this.open) {
      const [i, o] = this.bytes(s);
      bytesIn += i;
      bytesOut += o;
    }
    return { connections: this.open.size + this.handed, total: this.closed.total, bytesIn, bytesOut };
  }

  private bytes(s: net.Socket): [number, number] {
    return this.reverse ? [s.bytesWritten, s.bytesRead] : [s.bytesRead, s.bytesWritten];
  }

  /** Takes back the count of a hand-off that did not happen. */
  uncount(): void {
    this.closed.total--;
  }

  destroyAll(): void {
    for (const s of this.open) s.destroy();
  }
}

/** Relays two streams both ways until both directions end; either failing tears down both. */
export function relay(a: Duplex, b: Duplex): void {
  const settle = (err?: Error | null) => {
    if (err) {
      a.destroy();
      b.destroy();
    }
  };
  pipeline(a, b, settle);
  pipeline(b, a, settle);
}

export class TcpForward {
  private readonly listener: HostListener;
  private readonly counters = new Counters();
  // Aborted by close(): connections handed to the relay one by one are cut with the rest.
  private readonly closing = new AbortController();

  constructor(
    private readonly target: { guestIp: string; guestPort: number },
    private readonly dial: GuestDial,
    private readonly handoff?: Handoff,
    /** Gives the listener to the netns relay whenever one runs. */
    private readonly relay?: RelayHost,
  ) {
    // Half-open so a client's FIN reaches the guest while the answer is still streaming back;
    // paused so nothing the client sends is lost before the guest side exists.
    const makeServer = () => {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, highWaterMark: RELAY_BUFFER_BYTES }, (socket) => this.accept(socket));
      server.on('error', () => {});
      return server;
    };
    const request = { kind: 'forward' as const, host: target.guestIp, port: target.guestPort };
    this.listener = new HostListener(request, makeServer);
  }

  /** Binds the host listener; rejects with the bind error (EADDRINUSE, EACCES, EADDRNOTAVAIL). */
  async listen(ip: string, port: number): Promise<number> {
    const bound = await this.listener.listen({ host: ip, port, exclusive: true });
    if (this.relay) this.listener.offer(this.relay);
    return bound;
  }

  stats(): ForwardCounters {
    const here = this.counters.snapshot();
    const relay = this.listener.relayCounts();
    return {
      connections: here.connections + relay.active,
      total: here.total + relay.total,
      bytesIn: here.bytesIn + relay.in,
      bytesOut: here.bytesOut + relay.out,
    };
  }

  /** Stops listening and cuts every connection, the relay's included. */
  async close(): Promise<void> {
    const closed = this.listener.close();
    this.closing.abort();
    this.counters.destroyAll();
    await closed;
  }

  private accept(socket: net.Socket): void {
    if (this.handoff) {
      const ended = this.counters.handedOff();
      if (this.handoff(socket, ended, this.closing.signal)) return;
      ended({ in: 0, out: 0 });
      this.counters.uncount();
    }
    this.counters.track(socket);
    socket.setNoDelay(true);
    socket.on('error', () => {});
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(), DIAL_TIMEOUT_MS);
    socket.once('close', () => attempt.abort());
    this.dial(this.target.guestIp, this.target.guestPort, attempt.signal).then(
      (stream) => {
        clearTimeout(timer);
        if (socket.destroyed) return void stream.destroy();
        if (stream instanceof net.Socket) stream.setNoDelay(true);
        relay(socket, stream);
        socket.resume();
      },
      () => {
        clearTimeout(timer);
        // A reset, not a FIN: the client learns at once that nothing is there.
        socket.resetAndDestroy();
      },
    );
  }
}
