/**
 * The built-in SOCKS5 proxy into a guest's network (RFC 1928 CONNECT, RFC 1929 auth).
 *
 *   createSocksServer(options: SocksServerOptions): SocksServer
 *     listen(port: number, host = '127.0.0.1'): Promise<number>   resolves the bound port
 *     close(): Promise<void>                                        drops every connection
 *     stats(): { active: number; total: number; refused: number }
 *   plus Dialer, DialError, DialErrorKind, Target and RELAY_BUFFER_BYTES from ./dial.ts
 *
 * The server never opens a connection itself; it hands every CONNECT to `options.dial`, with
 * domain names unresolved so the guest's resolver (and /etc/hosts, and `localhost`) applies.
 * Hostile clients (garbage, SOCKS4, stalls, floods) only ever cost their own connection.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { pipeline, type Duplex } from 'node:stream';
import type { HandoffRequest } from '../../native/netns.js';
import { HostListener, type RelayHost } from '../host-listener.js';
import { DialError, RELAY_BUFFER_BYTES, replyFor, type Dialer } from './dial.js';
import * as wire from './protocol.js';
import { Reply, type Target } from './protocol.js';

export { DialError, RELAY_BUFFER_BYTES, type Dialer, type DialErrorKind, type Target } from './dial.js';

export interface SocksEvent {
  type: 'listening' | 'refused' | 'rejected' | 'connected' | 'closed' | 'error';
  [key: string]: unknown;
}

export interface SocksServerOptions {
  dial: Dialer;
  /** RFC 1929 username/password when set (1–255 bytes each); no authentication otherwise. */
  auth?: { username: string; password: string };
  /** Greeting, authentication and request must all arrive within this. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** A dial still pending after this is aborted and answered with 0x06. Default 15 s. */
  connectTimeoutMs?: number;
  /** Connections beyond this are closed on accept. Default 512. */
  maxConnections?: number;
  /**
   * Gives an accepted client, handshake and all, to someone who serves it entirely (the netns
   * relay speaks SOCKS5 itself); `onEnd` marks it over. False when it can't: the client is served here.
   */
  handoff?: (socket: net.Socket, onEnd: () => void, closing: AbortSignal) => boolean;
  /** Gives the listening socket itself to the netns relay whenever one runs (host-listener.ts). */
  relay?: { host: RelayHost; request: Extract<HandoffRequest, { kind: 'socks' }> };
  /** One call per listen, refusal, handshake rejection, connection and close; must not throw. */
  onEvent?: (event: SocksEvent) => void;
}

export interface SocksServer {
  listen(port: number, host?: string): Promise<number>;
  close(): Promise<void>;
  stats(): { active: number; total: number; refused: number };
}

// A refused client gets this long to read the reply and hang up before it is cut off.
const LINGER_MS = 2_000;

const digest = (bytes: Uint8Array | string): Buffer => createHash('sha256').update(bytes).digest();
const EMPTY: Buffer = Buffer.alloc(0);

export function createSocksServer(options: SocksServerOptions): SocksServer {
  const handshakeTimeoutMs = positive('handshakeTimeoutMs', options.handshakeTimeoutMs, 10_000);
  const connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs, 15_000);
  const maxConnections = positive('maxConnections', options.maxConnections, 512);
  const emit = options.onEvent ?? (() => {});
  const method = options.auth ? wire.METHOD_USER_PASS : wire.METHOD_NO_AUTH;
  const expected = options.auth && checkedCredentials(options.auth);
  const sockets = new Set<net.Socket>();
  // Aborted by close(): connections handed to the relay one by one are cut with the rest.
  const closing = new AbortController();
  let total = 0;
  let refused = 0;
  let handed = 0;

  // Half-open so a client's FIN reaches the guest while the reply is still streaming back.
  // Paused, so a client handed to the relay has none of its bytes read here.
  const makeServer = () => net.createServer({ allowHalfOpen: true, pauseOnConnect: true, highWaterMark: RELAY_BUFFER_BYTES }, (socket) => {
    if (sockets.size + handed >= maxConnections) {
      refused++;
      emit({ type: 'refused', peer: peerOf(socket), reason: 'too many connections' });
      socket.destroy();
      return;
    }
    total++;
    if (options.handoff) {
      handed++;
      let ended = false;
      const onEnd = () => {
        if (!ended) handed--;
        ended = true;
      };
      if (options.handoff(socket, onEnd, closing.signal)) return;
      onEnd();
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serve(socket);
    socket.resume();
  }).on('error', (err) => emit({ type: 'error', message: err.message }));
  const defaultRequest: HandoffRequest = { kind: 'socks', envName: '', resolve: async () => [] };
  const listener = new HostListener(options.relay?.request ?? defaultRequest, makeServer);

  function serve(socket: net.Socket): void {
    const peer = peerOf(socket);
    let phase: 'greeting' | 'auth' | 'request' | 'dial' | 'relay' | 'closing' = 'greeting';
    let pending: Buffer = EMPTY;
    let target: Target | undefined;
    let dialing: AbortController | undefined;
    let timer = setTimeout(() => drop('handshake timed out'), handshakeTimeoutMs);

    socket.setNoDelay(true);
    socket.on('error', () => {}); // 'close' follows and cleans up; the reason is not actionable
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.once('close', () => {
      clearTimeout(timer);
      dialing?.abort();
      emit({ type: 'closed', peer, target, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten });
    });

    function onData(chunk: Buffer): void {
      if (phase === 'closing') return;
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (phase === 'dial') {
        if (pending.length >= RELAY_BUFFER_BYTES) socket.pause();
      } else advance();
    }

    // A FIN before the relay starts cannot be told apart from a client that gave up (closing a
    // socket sends FIN, not RST), so it aborts the handshake or the dial.
    function onEnd(): void {
      if (phase !== 'closing') drop('client closed before the relay started');
    }

    function advance(): void {
      while (phase === 'greeting' || phase === 'auth' || phase === 'request') {
        if (phase === 'greeting') {
          const greeting = wire.parseGreeting(pending);
          if (greeting.status === 'more') return;
          if (greeting.status === 'reject') return drop(greeting.reason);
          pending = pending.subarray(greeting.size);
          if (!greeting.value.includes(method)) {
            return refuse(Buffer.from([wire.SOCKS_VERSION, wire.METHOD_NONE_ACCEPTABLE]), 'no acceptable method');
          }
          socket.write(Buffer.from([wire.SOCKS_VERSION, method]));
          phase = expected ? 'auth' : 'request';
        } else if (phase === 'auth') {
          const credentials = wire.parseCredentials(pending);
          if (credentials.status === 'more') return;
          const denied = Buffer.from([wire.AUTH_VERSION, 0x01]);
          if (credentials.status === 'reject') return refuse(denied, credentials.reason);
          pending = pending.subarray(credentials.size);
          // Both comparisons always run: which half was wrong must not show in the timing.
          const userOk = timingSafeEqual(digest(credentials.value.username), expected!.username);
          const passwordOk = timingSafeEqual(digest(credentials.value.password), expected!.password);
          if (!(userOk && passwordOk)) return refuse(denied, 'wrong username or password');
          socket.write(Buffer.from([wire.AUTH_VERSION, 0x00]));
          phase = 'request';
        } else {
          const request = wire.parseRequest(pending);
          if (request.status === 'more') return;
          if (request.status === 'reject') {
            if (request.reply === undefined) return drop(request.reason);
            return refuse(wire.encodeReply(request.reply), request.reason);
          }
          pending = pending.subarray(request.size);
          return dial(request.value);
        }
      }
    }

    function dial(to: Target): void {
      phase = 'dial';
      target = to;
      clearTimeout(timer);
      const attempt = new AbortController();
      dialing = attempt;
      timer = setTimeout(() => {
        attempt.abort(new DialError('timeout', `no connection after ${connectTimeoutMs} ms`));
        refuse(wire.encodeReply(Reply.ttlExpired), 'dial timed out');
      }, connectTimeoutMs);
      (async () => options.dial(to, attempt.signal))().then(
        (stream) => {
          // The client left or the timeout already answered: this stream has no one to serve.
          if (attempt.signal.aborted) return void stream.destroy();
          relay(stream);
        },
        (err: unknown) => {
          if (attempt.signal.aborted) return;
          refuse(wire.encodeReply(replyFor(err)), `dial failed: ${(err as Error)?.message ?? err}`);
        },
      );
    }

    function relay(stream: Duplex): void {
      phase = 'relay';
      clearTimeout(timer);
      dialing = undefined;
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      const bound = stream instanceof net.Socket ? stream : undefined;
      bound?.setNoDelay(true);
      socket.write(wire.encodeReply(Reply.succeeded, bound?.localAddress, bound?.localPort));
      // Bytes the client sent right behind its request (same packet or during the dial).
      if (pending.length > 0) stream.write(pending);
      pending = EMPTY;
      emit({ type: 'connected', peer, target });
      const settle = (): void => {}; // either direction failing destroys both; 'close' reports
      pipeline(socket, stream, settle);
      pipeline(stream, socket, settle);
    }

    function refuse(reply: Buffer, reason: string): void {
      emit({ type: 'rejected', peer, target, reason });
      phase = 'closing';
      pending = EMPTY;
      clearTimeout(timer);
      timer = setTimeout(() => socket.destroy(), LINGER_MS);
      socket.end(reply);
      // Keep reading (the dial may have paused at the early-data cap): unread input would turn
      // our FIN into a reset that can discard the reply, and the client's FIN must be seen.
      socket.resume();
    }

    function drop(reason: string): void {
      emit({ type: 'rejected', peer, target, reason });
      phase = 'closing';
      socket.destroy();
    }
  }

  return {
    listen: async (port, host = '127.0.0.1') => {
      const bound = await listener.listen({ port, host });
      emit({ type: 'listening', host, port: bound });
      if (options.relay) listener.offer(options.relay.host);
      return bound;
    },
    close: async () => {
      const closed = listener.close();
      closing.abort();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    stats: () => {
      const relay = listener.relayCounts();
      return { active: sockets.size + handed + relay.active, total: total + relay.total, refused };
    },
  };
}

function checkedCredentials(auth: { username: string; password: string }): { username: Buffer; password: Buffer } {
  for (const [name, value] of [['username', auth.username], ['password', auth.password]] as const) {
    const length = Buffer.byteLength(value);
    if (length < 1 || length > 255) throw new RangeError(`SOCKS ${name} must be 1–255 bytes, got ${length}`);
  }
  return { username: digest(auth.username), password: digest(auth.password) };
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`SOCKS ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function peerOf(socket: net.Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}
