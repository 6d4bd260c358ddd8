/**
 * The agent's link to its guest: one SSH connection, plus (for local containers) the native relay
 * inside the guest's network namespace, which dials far faster than an SSH channel. When SSH drops
 * (a reboot, sshd restarting) the link reconnects with backoff and says so through events; while it
 * is down every dial fails at once, so a host client is refused instead of left hanging.
 *
 * Events: 'up' (after every (re)connect, with the client), 'down', and 'gone' when the guest has
 * stayed stopped long enough that waiting is pointless.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, ClientChannel } from 'ssh2';
import type { Socket } from 'node:net';
import type { HandoffEnd, HandoffRequest, NetnsDatagramChannel, NetnsDialer, RelayListener } from '../native/netns.js';
import type { EmitEvent } from './events.js';
import { DialError } from './socks/dial.js';
import { sshDial } from './ssh-dial.js';

export type LinkState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/**
 * How long a relay-first start holds its login back unless something needs SSH sooner: the `env up` that
 * started the agent is logging in to the booting guest at that moment, and two logins at once slow both.
 */
const LOGIN_BEHIND_DELAY_MS = 1_000;

/** The fast path, when the provider has one: the pid of a process in the guest's netns, and the relay. */
export interface NetnsAccess {
  pid(): Promise<number | undefined>;
  start(pid: number, onExit: (reason: string) => void): Promise<{ dialer?: NetnsDialer; reason?: string }>;
}

export interface LinkOptions {
  /** Logs in to the guest; gives up after `timeoutMs`. */
  connect(timeoutMs: number): Promise<Client>;
  netns?: NetnsAccess;
  /**
   * Resolves once the guest runs (its namespace can be joined). Given with `netns`, start() returns as soon as
   * the relay serves, and the first login finishes behind it ('up' then): forwards and the proxy need no
   * sshd, so they don't wait for the guest's boot to reach it. Only for agents with nothing that needs SSH
   * to start (reverse forwards, synced folders).
   */
  running?(timeoutMs: number): Promise<void>;
  /** The provider's view, asked while reconnecting to tell a reboot from a guest that was stopped. */
  guestState?(): Promise<string>;
  emit: EmitEvent;
  backoff?: { firstMs: number; maxMs: number };
  /** A guest seen stopped for this long is not coming back by itself. Default 30 s. */
  goneAfterMs?: number;
  /** The login budget of one reconnect attempt (connect() retries refused connections within it). Default 3 s. */
  attemptMs?: number;
}

export interface LinkInfo {
  state: LinkState;
  /** When the state last changed (ISO). */
  since: string;
  /** How new connections reach the guest. */
  path: 'netns' | 'ssh';
  netnsPid?: number;
  /** Why the fast path is not used, when it is not. */
  netnsUnavailable?: string;
  lastError?: string;
  reconnects: number;
}

export class GuestLink extends EventEmitter {
  private stateValue: LinkState = 'connecting';
  private sinceValue = new Date();
  private clientValue: Client | undefined;
  private relay: NetnsDialer | undefined;
  private nsPid: number | undefined;
  private netnsReason: string | undefined;
  private lastError: string | undefined;
  private reconnects = 0;
  /** The first login while the relay already serves (relay-first start); exec waits for it. */
  private firstLogin: Promise<void> | undefined;
  /** Ends the first login's hold-back at once (something needs SSH now). */
  private loginNow: (() => void) | undefined;
  private readonly stopping = new AbortController();
  private readonly served = new Set<RelayListener>();

  constructor(private readonly opts: LinkOptions) {
    super();
  }

  get state(): LinkState {
    return this.stateValue;
  }

  get client(): Client | undefined {
    return this.clientValue;
  }

  /** A guest process whose /proc/<pid>/net shows the guest's sockets (containers only). */
  get netnsPid(): number | undefined {
    return this.nsPid;
  }

  info(): LinkInfo {
    return {
      state: this.stateValue,
      since: this.sinceValue.toISOString(),
      path: this.relay ? 'netns' : 'ssh',
      netnsPid: this.nsPid,
      netnsUnavailable: this.relay ? undefined : this.netnsReason,
      lastError: this.lastError,
      reconnects: this.reconnects,
    };
  }

  /** The first connection; rejects when the guest can't be reached within `timeoutMs`. */
  async start(timeoutMs: number): Promise<void> {
    const started = Date.now();
    if (this.opts.netns && this.opts.running) {
      await this.opts.running(timeoutMs);
      await this.startRelay();
      if (this.relay) {
        this.setState('connected');
        this.announce(started);
        this.firstLogin = this.loginBehind(Math.max(1, timeoutMs - (Date.now() - started)));
        return;
      }
    }
    await this.attach(await this.opts.connect(timeoutMs), started);
  }

  /** The relay-first start's login: 'up' when it works; when it doesn't, the link reconnects as after a loss. */
  private async loginBehind(timeoutMs: number): Promise<void> {
    try {
      const wanted = new Promise<void>((resolve) => (this.loginNow = resolve));
      await Promise.race([sleep(LOGIN_BEHIND_DELAY_MS, undefined, { signal: this.stopping.signal, ref: false }).catch(() => {}), wanted]);
      this.loginNow = undefined;
      if (this.stopping.signal.aborted) return;
      const client = await this.opts.connect(timeoutMs);
      if (this.stopping.signal.aborted) return void client.end();
      await this.attach(client, Date.now(), false);
    } catch (err) {
      if (this.stateValue === 'closed') return;
      this.lastError = (err as Error).message;
      this.setState('reconnecting');
      this.opts.emit('disconnected', `could not log in to the guest: ${this.lastError}`);
      void this.reconnect();
    } finally {
      this.firstLogin = undefined;
    }
  }

  /** A byte stream to host:port as the guest sees it (an IP literal or `localhost` on the fast path). */
  dial(host: string, port: number, signal?: AbortSignal): Promise<Duplex> {
    if (this.relay) return this.relay.dial({ host, port }, signal);
    if (this.clientValue) return sshDial(this.clientValue, host, port, signal);
    return Promise.reject(new DialError('unreachable', `the guest is not connected (${this.stateValue})`));
  }

  /**
   * Hands an accepted host connection to the relay (the fast path only), which serves it without
   * this process touching its bytes. False when it can't: the caller serves the socket itself.
   */
  handoff(socket: Socket, request: HandoffRequest, onEnd: (end: HandoffEnd) => void, signal?: AbortSignal): boolean {
    return this.relay?.handoff?.(socket, request, onEnd, signal) ?? false;
  }

  /**
   * Host listeners the relay serves itself (host-listener.ts): given to the relay now if one runs,
   * and to every relay started after it (a guest reboot starts a new one), until unserve().
   */
  serve(listener: RelayListener): void {
    this.served.add(listener);
    this.relay?.listen?.(listener);
  }

  /** The relay stops serving `listener` and cuts its connections. */
  unserve(listener: RelayListener): void {
    if (this.served.delete(listener)) this.relay?.unlisten?.(listener);
  }

  /** Datagrams to host:port inside the guest: only the fast path can carry UDP. */
  udp(host: string, port: number): Promise<NetnsDatagramChannel> {
    if (this.relay) return this.relay.udp({ host, port });
    return Promise.reject(new DialError('unreachable', `the guest is not connected (${this.stateValue})`));
  }

  /** Runs a short command in the guest and collects its output. */
  async exec(command: string): Promise<{ code: number; stdout: string }> {
    // Right after a relay-first start the login may still be on its way: worth waiting for.
    if (!this.clientValue && this.firstLogin) {
      this.loginNow?.();
      await this.firstLogin;
    }
    const client = this.clientValue;
    if (!client) return Promise.reject(new DialError('unreachable', `the guest is not connected (${this.stateValue})`));
    return execText(client, command);
  }

  async close(): Promise<void> {
    this.setState('closed');
    this.stopping.abort();
    this.clientValue?.end();
    this.clientValue = undefined;
    const relay = this.relay;
    this.relay = undefined;
    await relay?.close();
  }

  private setState(state: LinkState): void {
    if (this.stateValue === 'closed') return;
    this.stateValue = state;
    this.sinceValue = new Date();
  }

  /** `announce`: says 'connected' (not after a relay-first start, which said it when the relay served). */
  private async attach(client: Client, started: number, announce = true): Promise<void> {
    this.clientValue = client;
    client.once('close', () => this.lost(client, 'the SSH connection closed'));
    interactive(client);
    await this.startRelay();
    if (this.clientValue !== client) return; // lost again while the relay started
    this.setState('connected');
    if (announce) this.announce(started);
    this.emit('up', client);
  }

  private announce(started: number): void {
    const path = this.relay ? 'netns' : 'ssh';
    const after = Date.now() - started;
    const how = path === 'netns' ? `through the guest's network namespace (pid ${this.nsPid})` : 'over SSH';
    this.opts.emit('connected', `connected to the guest ${how} in ${after} ms`, { path, ms: after, netnsUnavailable: this.netnsReason });
  }

  /** (Re)starts the relay when the guest's namespace is new (a reboot gives it a new init pid). */
  private async startRelay(): Promise<void> {
    if (!this.opts.netns) return;
    const pid = await this.opts.netns.pid().catch(() => undefined);
    if (this.relay && pid === this.nsPid) return;
    this.nsPid = pid;
    const old = this.relay;
    this.relay = undefined;
    await old?.close();
    if (pid === undefined) {
      this.netnsReason = 'the guest has no process to join yet';
      return;
    }
    const { dialer, reason } = await this.opts.netns.start(pid, (why) => {
      if (this.relay !== dialer) return;
      this.relay = undefined;
      this.netnsReason = `the relay stopped: ${why}`;
      // The namespace's init is gone: the guest is rebooting or stopping, and SSH will follow. Before the
      // first login (relay-first start) there is no SSH to follow: that login, or the reconnects after
      // it, bring the link back.
      if (this.clientValue) this.clientValue.end();
      else this.setState('reconnecting');
    });
    this.relay = dialer;
    this.netnsReason = reason;
    for (const listener of this.served) dialer?.listen?.(listener);
  }

  private lost(client: Client, why: string): void {
    if (this.clientValue !== client || this.stateValue === 'closed') return;
    this.clientValue = undefined;
    this.lastError = why;
    this.setState('reconnecting');
    this.opts.emit('disconnected', `lost the guest: ${why}`);
    this.emit('down');
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    const { firstMs, maxMs } = this.opts.backoff ?? { firstMs: 100, maxMs: 2_000 };
    const goneAfterMs = this.opts.goneAfterMs ?? 30_000;
    const started = Date.now();
    let delay = firstMs;
    let stoppedSince: number | undefined;
    let attempts = 0;
    this.opts.emit('reconnecting', `reconnecting (retrying every ${firstMs} ms, backing off to ${maxMs} ms)`);
    while (!this.stopping.signal.aborted) {
      attempts++;
      try {
        const client = await this.opts.connect(this.opts.attemptMs ?? 3_000);
        if (this.stopping.signal.aborted) return void client.end();
        this.reconnects++;
        await this.attach(client, started);
        return;
      } catch (err) {
        this.lastError = (err as Error).message;
      }
      const state = await this.opts.guestState?.().catch(() => undefined);
      if (state === 'stopped' || state === 'absent') {
        stoppedSince ??= Date.now();
        if (Date.now() - stoppedSince >= goneAfterMs) {
          this.emit('gone', `the guest is ${state}`);
          return;
        }
      } else stoppedSince = undefined;
      if (attempts % 20 === 0) this.opts.emit('reconnecting', `still reconnecting after ${attempts} attempts: ${this.lastError}`);
      await sleep(delay, undefined, { signal: this.stopping.signal }).catch(() => {});
      delay = Math.min(delay * 2, maxMs);
    }
  }
}

/**
 * A command's stdout and exit status. The listeners go on inside the exec callback: a fast command's
 * exit-status can arrive in the same read as the channel's confirmation, and would be missed by a
 * listener added one promise tick later.
 */
function execText(client: Client, command: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(command, (err, channel) => {
        if (err) return reject(err);
        const out: Buffer[] = [];
        let code: number | undefined;
        let open = 2; // stdout's end and the channel's close
        const done = () => {
          if (--open > 0) return;
          if (code === undefined) reject(new Error(`the guest command ended without an exit status: ${command}`));
          else resolve({ code, stdout: Buffer.concat(out).toString('utf8') });
        };
        channel.on('exit', (status: number | null) => (code = status ?? 255));
        channel.on('data', (chunk: Buffer) => out.push(chunk));
        channel.on('end', done);
        channel.on('close', done);
        channel.on('error', () => {});
        channel.stderr.resume();
      });
    } catch (err) {
      reject(err as Error);
    }
  });
}

/**
 * sshd leaves Nagle on for a connection until a session asks for a terminal; every new channel then
 * waits ~40 ms for delayed ACKs. One idle PTY session switches the whole connection to interactive.
 */
function interactive(client: Client): void {
  try {
    client.exec('exec sleep infinity', { pty: { rows: 1, cols: 80, height: 0, width: 0, term: 'dumb' } }, (err, channel: ClientChannel) => {
      if (err) return;
      channel.on('error', () => {});
      channel.resume();
    });
  } catch {
    // the connection is already going away; 'close' handles it
  }
}
