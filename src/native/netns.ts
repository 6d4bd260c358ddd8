/**
 * The fast path into a local guest's network: native/nsrelay runs inside the guest's network
 * namespace and opens connections there for us over a unix socket (see nsrelay-protocol.ts).
 * It moves ~3 GiB/s and connects in well under a millisecond, where SSH channels manage
 * ~350 MiB/s. Node can't enter a namespace itself, hence the helper; when it is missing or
 * can't run, startNetnsDialer answers with a reason and the agent stays on SSH.
 *
 * Better still, the agent hands its listening sockets to the relay (descriptors travel over Node's
 * IPC channel): the relay's threads accept, answer a SOCKS5 client themselves, connect and splice,
 * so neither a connection's bytes nor its setup pass through the agent. The agent keeps its own
 * descriptor of each listening socket (idle while the relay serves), so the port outlives a relay.
 * A single accepted connection can be handed over too, for when the agent accepted it itself.
 *
 *   const { dialer, reason } = await startNetnsDialer({ pid, runDir, onExit });
 *   const stream = await dialer.dial({ host: '127.0.0.1', port: 5432 }, signal);
 *   dialer.listen(listener);   // a RelayListener (agent/host-listener.ts): the relay accepts on it
 *   dialer.handoff(socket, { kind: 'forward', host: '127.0.0.1', port: 5432 }, onEnd, signal);
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { connect, isIP, type NetConnectOpts, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { DialError, RELAY_BUFFER_BYTES } from '../agent/socks/dial.js';
import { executable, nativeHelperPath } from './locate.js';
import {
  DatagramDecoder,
  MAX_REPLY_BYTES,
  READY_LINE,
  dialErrorFor,
  encodeDatagram,
  encodeRequest,
  parseReply,
  relayHost,
  type RelayProto,
} from './nsrelay-protocol.js';

export interface NetnsTarget {
  host: string;
  port: number;
}

/** A connected UDP socket inside the guest; each send() is one datagram. */
export interface NetnsDatagramChannel {
  send(msg: Buffer): void;
  on(event: 'message', cb: (msg: Buffer) => void): this;
  /** The channel ended: closed by us, or the relay went away. */
  on(event: 'close', cb: () => void): this;
  close(): void;
}

/**
 * What the relay does with a host connection handed over to it: a port forward connects to
 * host:port in the guest; a SOCKS client has its whole SOCKS5 conversation with the relay, which
 * asks `resolve` for names other than the guest's own (localhost, the env's name).
 */
export type HandoffRequest =
  | { kind: 'forward'; host: string; port: number }
  | { kind: 'socks'; envName: string; auth?: { username: string; password: string }; resolve(name: string): Promise<string[]> };

/** Bytes a handed-over connection moved: `in` from the host client, `out` to it. */
export interface HandoffEnd {
  in: number;
  out: number;
}

/**
 * A host listener the relay can serve itself: it accepts, answers (SOCKS5 included) and splices
 * without the agent seeing the connection at all. The agent keeps a descriptor of the socket the
 * whole time, so the port stays bound (and connections queue) while no relay runs.
 */
export interface RelayListener {
  /** What each connection gets: a port forward's target, or a SOCKS5 conversation. */
  readonly request: HandoffRequest;
  /** The listening socket to give the relay (a libuv handle), or undefined when there is none. */
  handle(): object | undefined;
  /** The relay accepts from now on; `holder` is a descriptor of the same socket for the agent to keep. */
  taken(holder: { close(): void }): void;
  /** The relay that served it is gone: the agent accepts again. */
  released(): void;
  /** The relay's figures for this listener since it took it (sent shortly after they change). */
  counted(counts: RelayCounts): void;
}

/** Connections a relay served for one listener: open now, accepted in all, bytes of those that ended. */
export interface RelayCounts {
  active: number;
  total: number;
  in: number;
  out: number;
}

export interface NetnsDialer {
  /** A byte stream to host:port inside the guest's network namespace (IP literal or 'localhost'). */
  dial(target: NetnsTarget, signal?: AbortSignal): Promise<Duplex>;
  /** A datagram channel to host:port inside the guest (for UDP forwards). */
  udp(target: NetnsTarget): Promise<NetnsDatagramChannel>;
  /**
   * Gives an accepted host connection to the relay, which connects inside the guest and moves its
   * bytes itself; `onEnd` is called once the connection is over. False when the relay can't take
   * it (no channel to the relay, or a target it can't dial): the caller serves the socket.
   * Aborting `signal` (the forward or proxy went) cuts the connection.
   */
  handoff?(socket: Socket, request: HandoffRequest, onEnd: (end: HandoffEnd) => void, signal?: AbortSignal): boolean;
  /** Gives a listening socket to the relay (see RelayListener); false when it can't take it. */
  listen?(listener: RelayListener): boolean;
  /** The relay stops accepting for `listener` and cuts every connection it still has. */
  unlisten?(listener: RelayListener): void;
  /** Stops the relay; its open connections end with it. onExit is not called for this. */
  close(): Promise<void>;
  /** The relay process, for status output. */
  readonly relayPid: number | undefined;
  readonly socketPath: string;
}

export interface StartNetnsDialerOptions {
  /** A process inside the guest (its init): the relay joins its network namespace and exits with it. */
  pid: number;
  /** Where the relay's socket goes (the env's agent folder). */
  runDir: string;
  /** The relay stopped on its own (the guest stopped, or it was killed); dial() fails from now on. */
  onExit?: (reason: string) => void;
  /** The relay binary; default native/build/nsrelay. */
  helper?: string;
  /** Connect timeout inside the guest when dial() gets no signal. Default 10 s (the relay's). */
  connectTimeoutMs?: number;
  /** How long a client may take to send its request line (or, handed over, its SOCKS handshake). Default 10 s (the relay's). */
  headerTimeoutMs?: number;
  /** How long the relay may take to say it is ready. Default 5 s. */
  startTimeoutMs?: number;
}

const START_TIMEOUT_MS = 5_000;
const MAX_QUEUED_DATAGRAM_BYTES = 4 * RELAY_BUFFER_BYTES;
const STOP_GRACE_MS = 2_000;
// sockaddr_un.sun_path is 108 bytes with its terminating NUL.
const MAX_SOCKET_PATH_BYTES = 107;

/** Starts a relay for the namespace of `pid`; resolves undefined with `reason` when the native helper is missing or can't run (caller falls back to SSH). */
export async function startNetnsDialer(opts: StartNetnsDialerOptions): Promise<{ dialer?: NetnsDialer; reason?: string }> {
  if (process.platform !== 'linux') return { reason: 'entering a guest network namespace needs Linux' };
  const helper = opts.helper ?? nativeHelperPath('nsrelay');
  if (!helper || !executable(helper)) {
    return { reason: `the native relay is not built (${helper ?? 'native/build/nsrelay'} missing; run \`make -C native\`)` };
  }
  if (!Number.isInteger(opts.pid) || opts.pid <= 0) return { reason: `no guest process to join (pid ${opts.pid})` };
  const socketPath = join(opts.runDir, `nsrelay-${opts.pid}.sock`);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    return { reason: `the relay socket path is longer than ${MAX_SOCKET_PATH_BYTES} bytes: ${socketPath}` };
  }
  try {
    mkdirSync(opts.runDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    return { reason: `cannot create ${opts.runDir}: ${(err as Error).message}` };
  }

  const args = ['--pid', String(opts.pid), '--socket', socketPath, '--userns', `/proc/${opts.pid}/ns/user`];
  if (opts.connectTimeoutMs !== undefined) args.push('--connect-timeout-ms', String(Math.max(1, Math.ceil(opts.connectTimeoutMs))));
  if (opts.headerTimeoutMs !== undefined) args.push('--header-timeout-ms', String(Math.max(1, Math.ceil(opts.headerTimeoutMs))));
  let child: ChildProcess;
  try {
    // The fourth descriptor is Node's IPC channel: it carries accepted connections to the relay.
    child = spawn(helper, args, { stdio: ['pipe', 'pipe', 'pipe', 'ipc'] });
  } catch (err) {
    return { reason: `cannot run ${helper}: ${(err as Error).message}` };
  }
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr = (stderr + text).slice(-4096);
  });
  // The relay exits when its stdin closes: holding the pipe open is what keeps it alive.
  child.stdin!.on('error', () => {});
  const why = (code: number | null, signal: NodeJS.Signals | null): string =>
    stderr.split('\n').filter((line) => line.startsWith('nsrelay: ')).pop()?.slice('nsrelay: '.length) ||
    (signal ? `the relay was killed by ${signal}` : `the relay exited with status ${code}`);

  const started = await new Promise<string | undefined>((resolve) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rmSync(socketPath, { force: true });
      done(`the relay did not start within ${opts.startTimeoutMs ?? START_TIMEOUT_MS} ms`);
    }, opts.startTimeoutMs ?? START_TIMEOUT_MS);
    const done = (reason: string | undefined): void => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('error', onError);
      child.off('exit', onEarlyExit);
      resolve(reason);
    };
    const onData = (chunk: Buffer): void => {
      out += chunk.toString('latin1');
      if (out.includes('\n')) done(out.split('\n')[0] === READY_LINE ? undefined : `unexpected output from the relay: ${out.slice(0, 80)}`);
    };
    const onError = (err: Error): void => done(`cannot run ${helper}: ${err.message}`);
    // stderr may still be in flight when 'exit' fires; 'close' waits for the pipes.
    const onEarlyExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      child.once('close', () => done(why(code, signal)));
    };
    child.stdout!.on('data', onData);
    child.once('error', onError);
    child.once('exit', onEarlyExit);
  });
  if (started !== undefined) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return { reason: `cannot relay into the guest network: ${started}` };
  }
  child.stdout!.resume();
  return { dialer: new RelayDialer(child, socketPath, why, opts.onExit) };
}

interface Handed {
  onEnd(end: HandoffEnd): void;
  resolve?(name: string): Promise<string[]>;
}

/** A message from the relay over the IPC channel (native/nsrelay.c, "connections handed over", "listeners handed over"). */
interface RelayEvent {
  ev?: string;
  /** The listener a connection came from; 0 or absent for a connection handed over alone. */
  l?: number;
  id?: number;
  host?: string;
  in?: number;
  out?: number;
  active?: number;
  total?: number;
  error?: string;
}

interface Listening {
  listener: RelayListener;
  /** The relay said it accepts (and gave back its descriptor). */
  taken: boolean;
}

type Handle = { close(): void };

class RelayDialer implements NetnsDialer {
  private exitReason: string | undefined;
  private closing = false;
  private readonly exited: Promise<void>;
  private readonly handed = new Map<number, Handed>();
  private readonly listening = new Map<number, Listening>();
  private readonly listenerIds = new Map<RelayListener, number>();
  private nextId = 0;

  constructor(
    private readonly child: ChildProcess,
    readonly socketPath: string,
    why: (code: number | null, signal: NodeJS.Signals | null) => string,
    onExit: ((reason: string) => void) | undefined,
  ) {
    // A send to a relay that just exited errors here as well as in its callback.
    child.on('error', () => {});
    child.on('message', (message: RelayEvent, handle?: Handle) => this.onMessage(message, handle));
    this.exited = new Promise((resolve) => {
      child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
        this.exitReason = why(code, signal);
        // Its connections died with it.
        for (const entry of this.handed.values()) entry.onEnd({ in: 0, out: 0 });
        this.handed.clear();
        // Its listeners' sockets live on in the agent's descriptors: the agent accepts again.
        const listening = [...this.listening.values()];
        this.listening.clear();
        this.listenerIds.clear();
        for (const entry of listening) if (entry.taken) entry.listener.released();
        // A relay killed with SIGKILL could not remove its socket.
        rmSync(socketPath, { force: true });
        resolve();
        if (!this.closing) onExit?.(this.exitReason);
      });
    });
  }

  get relayPid(): number | undefined {
    return this.exitReason === undefined ? this.child.pid : undefined;
  }

  async dial(target: NetnsTarget, signal?: AbortSignal): Promise<Duplex> {
    // No signal: the relay's own connect timeout applies.
    return this.open('TCP', target, signal);
  }

  async udp(target: NetnsTarget): Promise<NetnsDatagramChannel> {
    return new DatagramChannel(await this.open('UDP', target));
  }

  handoff(socket: Socket, request: HandoffRequest, onEnd: (end: HandoffEnd) => void, signal?: AbortSignal): boolean {
    const handle = (socket as unknown as { _handle?: object | null })._handle;
    if (!handle || !this.child.connected || this.exitReason !== undefined || this.closing) return false;
    const id = ++this.nextId;
    let line: string;
    if (request.kind === 'forward') {
      const host = relayHost(request.host);
      if (host === undefined || /[%\s"\\]/.test(host)) return false;
      line = `FWD ${id} ${host} ${request.port}`;
    } else {
      line = `SOCKS ${id} ${socksFields(request)}`;
    }
    const cut = () => {
      if (this.handed.has(id) && this.child.connected) this.child.send({ r: `CUT ${id}` }, undefined, {}, () => {});
    };
    signal?.addEventListener('abort', cut, { once: true });
    const ended = (end: HandoffEnd) => {
      signal?.removeEventListener('abort', cut);
      onEnd(end);
    };
    this.handed.set(id, { onEnd: ended, resolve: request.kind === 'socks' ? request.resolve : undefined });
    // Node sends the descriptor with the line (SCM_RIGHTS); ours is closed once it is on its way.
    // The handle type is not in @types/node's signature for send().
    const sent = this.child.send({ r: line }, handle as unknown as Socket, {}, (err: Error | null) => {
      socket.destroy();
      if (err) this.ended(id, { in: 0, out: 0 });
    });
    return sent || this.child.connected;
  }

  listen(listener: RelayListener): boolean {
    const handle = listener.handle();
    if (!handle || !this.child.connected || this.exitReason !== undefined || this.closing || this.listenerIds.has(listener)) return false;
    const { request } = listener;
    let line: string;
    const id = ++this.nextId;
    if (request.kind === 'forward') {
      const host = relayHost(request.host);
      if (host === undefined || /[%\s"\\]/.test(host)) return false;
      line = `LISTEN ${id} FWD ${host} ${request.port}`;
    } else {
      line = `LISTEN ${id} SOCKS ${socksFields(request)}`;
    }
    this.listening.set(id, { listener, taken: false });
    this.listenerIds.set(listener, id);
    // Node sends a descriptor of the socket and keeps its own; the relay answers with another.
    const sent = this.child.send({ r: line }, handle as unknown as Socket, {}, (err: Error | null) => {
      if (err) this.forget(listener);
    });
    return sent || this.child.connected;
  }

  unlisten(listener: RelayListener): void {
    const id = this.forget(listener);
    if (id !== undefined && this.child.connected) this.child.send({ r: `UNLISTEN ${id}` }, undefined, {}, () => {});
  }

  private forget(listener: RelayListener): number | undefined {
    const id = this.listenerIds.get(listener);
    if (id === undefined) return undefined;
    this.listenerIds.delete(listener);
    this.listening.delete(id);
    return id;
  }

  private onMessage(message: RelayEvent, handle: Handle | undefined): void {
    if (typeof message !== 'object' || message === null) return void handle?.close();
    if (typeof message.l === 'number' && message.l > 0) return this.onListenerMessage(message.l, message, handle);
    if (typeof message.id !== 'number') return;
    const id = message.id;
    if (message.ev === 'end') this.ended(id, bytesOf(message));
    else if (message.ev === 'resolve' && typeof message.host === 'string') this.resolve(0, id, message.host, this.handed.get(id)?.resolve);
  }

  private onListenerMessage(l: number, message: RelayEvent, handle: Handle | undefined): void {
    const entry = this.listening.get(l);
    if (message.ev === 'listening') {
      if (!entry || !handle) return void handle?.close();
      entry.taken = true;
      return entry.listener.taken(handle);
    }
    handle?.close();
    if (!entry) return;
    if (message.ev === 'listen-failed') this.forget(entry.listener); // the agent goes on accepting
    else if (message.ev === 'stats') {
      entry.listener.counted({ active: Number(message.active) || 0, total: Number(message.total) || 0, ...bytesOf(message) });
    } else if (message.ev === 'resolve' && typeof message.id === 'number' && typeof message.host === 'string') {
      const id = message.id;
      const { request } = entry.listener;
      this.resolve(l, id, message.host, request.kind === 'socks' ? request.resolve : undefined);
    }
  }

  /** Answers a resolve event: the guest's addresses for `host`, or "-" (the relay then refuses). */
  private resolve(listener: number, id: number, host: string, resolver: ((name: string) => Promise<string[]>) | undefined): void {
    const answer = (addresses: string[]) => {
      const usable = addresses.filter((a) => isIP(a) !== 0 && !/[\s"\\]/.test(a));
      if (this.child.connected) this.child.send({ r: `RESOLVED ${listener} ${id} ${usable.length ? usable.join(' ') : '-'}` }, undefined, {}, () => {});
    };
    if (!resolver) return answer([]);
    resolver(host).then(answer, () => answer([]));
  }

  private ended(id: number, end: HandoffEnd): void {
    const entry = this.handed.get(id);
    if (!entry) return;
    this.handed.delete(id);
    entry.onEnd(end);
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.exitReason === undefined) {
      this.child.stdin!.end();
      const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS);
      await this.exited;
      clearTimeout(timer);
    }
  }

  private open(proto: RelayProto, target: NetnsTarget, signal?: AbortSignal): Promise<Socket> {
    const name = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
    return new Promise((resolve, reject) => {
      if (this.exitReason !== undefined || this.closing) {
        return reject(new DialError('failure', `no relay into the guest network: ${this.exitReason ?? 'closed'}`));
      }
      if (signal?.aborted) return reject(aborted(signal));
      const request = encodeRequest(proto, target.host, target.port);
      // Node 20 honours highWaterMark here; @types/node 20 does not list it.
      const options: NetConnectOpts & { highWaterMark: number } = { path: this.socketPath, allowHalfOpen: true, highWaterMark: RELAY_BUFFER_BYTES };
      const socket = connect(options);
      let reply = Buffer.alloc(0);
      const settle = (err: Error | undefined): void => {
        signal?.removeEventListener('abort', onAbort);
        // Without a 'readable' or 'data' listener the stream is neither flowing nor paused:
        // the caller's pipe() or on('data') starts it, so no byte is lost or stuck.
        socket.off('readable', onReadable).off('error', onError).off('end', onEnd);
        if (err) {
          socket.destroy();
          return reject(err);
        }
        resolve(socket);
      };
      const onReadable = (): void => {
        for (let chunk: Buffer | null; (chunk = socket.read() as Buffer | null) !== null; ) reply = Buffer.concat([reply, chunk]);
        const end = reply.indexOf(0x0a);
        if (end < 0) {
          if (reply.length > MAX_REPLY_BYTES) settle(new DialError('failure', 'the relay sent an overlong reply'));
          return;
        }
        const parsed = parseReply(reply.subarray(0, end).toString('latin1'));
        if (!parsed.ok) return settle(dialErrorFor(parsed, name));
        // The guest may have spoken first (a banner) in the same read as our "OK".
        if (end + 1 < reply.length) socket.unshift(reply.subarray(end + 1));
        socket.setNoDelay(true);
        settle(undefined);
      };
      const onError = (err: Error): void =>
        settle(new DialError('failure', `the relay into the guest network is not reachable: ${err.message}`, { cause: err }));
      const onEnd = (): void => settle(new DialError('failure', 'the relay closed the connection before answering'));
      const onAbort = (): void => settle(aborted(signal!));
      socket.on('readable', onReadable).on('error', onError).on('end', onEnd);
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.write(request);
    });
  }
}

/** "<envhex> <userhex|-> <passhex|->": the SOCKS settings as the relay reads them (no escaping needed). */
function socksFields(request: Extract<HandoffRequest, { kind: 'socks' }>): string {
  const hex = (text: string | undefined) => (text === undefined ? '-' : Buffer.from(text).toString('hex'));
  return `${hex(request.envName.toLowerCase())} ${hex(request.auth?.username)} ${hex(request.auth?.password)}`;
}

function bytesOf(message: RelayEvent): HandoffEnd {
  return { in: Number(message.in) || 0, out: Number(message.out) || 0 };
}

function aborted(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof DialError) return reason;
  return new DialError('failure', 'dial aborted', { cause: reason });
}

class DatagramChannel extends EventEmitter implements NetnsDatagramChannel {
  constructor(private readonly socket: Socket) {
    super();
    const decoder = new DatagramDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const msg of decoder.push(chunk)) this.emit('message', msg);
    });
    socket.on('error', () => socket.destroy());
    socket.on('end', () => socket.end());
    socket.once('close', () => this.emit('close'));
    socket.resume();
  }

  /** Like UDP, drops the datagram rather than queueing without bound when the relay lags. */
  send(msg: Buffer): void {
    const frame = encodeDatagram(msg);
    if (!this.socket.destroyed && this.socket.writableLength < MAX_QUEUED_DATAGRAM_BYTES) this.socket.write(frame);
  }

  close(): void {
    this.socket.destroy();
  }
}
