/**
 * The agent of one env, as an object: it binds the forwards and the proxy, connects to the guest,
 * follows its listeners, answers the control socket and writes events. `env agent` runs one per env
 * (core/agent.ts builds the options from the Envfile and the env's state); tests run it in-process
 * against a fake guest.
 *
 * Readiness: `ready` is emitted once the guest link is up and every forward and the proxy has been
 * tried; forwards that could not start are listed as warnings, not failures, since the rest works.
 * Only a guest that can't be reached at all makes the start fail (a `failed` event and a throw).
 */
import { chmod, mkdir } from 'node:fs/promises';
import type { PortRange } from '../envfile/defaults.js';
import { EnvboxError } from '../util/errors.js';
import { SSH_PORT, type AutoPortRules } from './autoports.js';
import { serveControl, type ControlServer } from './control.js';
import { openEventLog, type AgentEvent, type EventLog } from './events.js';
import type { AgentFiles } from './files.js';
import { Forwards } from './forwards.js';
import { GuestLink, type LinkInfo, type LinkOptions } from './link.js';
import type { ForwardSpec, ForwardStatus } from './portfwd/spec.js';
import { PortWatch } from './portwatch.js';
import { GuestProxy, type ProxyStatus } from './proxy.js';
import { FolderSyncs, type FolderSpec, type FolderStatus, type OpenOps } from '../sync/manager.js';
import { guestOpener } from '../sync/open.js';
import { agentServes } from '../sync/served.js';

export interface AgentOptions {
  envName: string;
  guestAddress: string;
  files: AgentFiles;
  /** Static and reverse forwards, with host ports already settled (core/ports.ts). */
  forwards: ForwardSpec[];
  autoPorts: { enabled: boolean; ignore: PortRange[]; only: PortRange[] };
  /** `port` 0 lets the kernel choose; `fallback` allows another port when it is taken (socks: auto). */
  proxy?: { port: number; pacPort: number; fallback: boolean; auth?: { username: string; password: string } };
  link: Omit<LinkOptions, 'emit'>;
  /** Identifies the settings this agent runs with, so `env up` can tell when it must restart. */
  configHash: string;
  connectTimeoutMs?: number;
  pollMs?: number;
  onEvent?: (event: AgentEvent) => void;
  /** Shared folders: those that are synced or have events replayed are watched by the agent. */
  folders?: FolderSpec[];
  /** How to reach the guest for folders (default: the envbox-guest helper, else SFTP). */
  openOps?: OpenOps;
}

export interface AgentStatus {
  pid: number;
  env: string;
  startedAt: string;
  uptimeMs: number;
  configHash: string;
  connection: LinkInfo;
  forwards: ForwardStatus[];
  proxy: ProxyStatus | null;
  autoPorts: boolean;
  folders: FolderStatus[];
}

export class Agent {
  private readonly started = new Date();
  private readonly events: EventLog;
  private readonly link: GuestLink;
  private readonly forwards: Forwards;
  private readonly folders: FolderSyncs;
  private proxy: GuestProxy | undefined;
  private proxyFailure: string | undefined;
  private watch: PortWatch | undefined;
  private control: ControlServer | undefined;
  private stopping: Promise<void> | undefined;
  private resolveStopped!: (reason: string) => void;
  /** Settles with the reason once the agent has stopped (asked to, or its guest went away for good). */
  readonly stopped = new Promise<string>((resolve) => (this.resolveStopped = resolve));

  constructor(private readonly opts: AgentOptions) {
    this.events = openEventLog(opts.files.events, opts.onEvent);
    // Reverse forwards and the folders the agent syncs need SSH; without them the relay alone makes the agent ready.
    const needsSsh = opts.forwards.some((f) => f.kind === 'reverse') || (opts.folders ?? []).some(agentServes);
    this.link = new GuestLink({ ...opts.link, running: needsSsh ? undefined : opts.link.running, emit: this.events.emit });
    this.forwards = new Forwards(this.link, this.events.emit, Boolean(opts.link.netns));
    this.folders = new FolderSyncs(opts.folders ?? [], { openOps: opts.openOps ?? guestOpener(this.events.emit), emit: this.events.emit });
  }

  /** Everything up to `ready`; on failure the agent has cleaned up after itself and the error says why. */
  async start(): Promise<void> {
    const { emit } = this.events;
    emit('starting', `agent for env "${this.opts.envName}" starting (pid ${process.pid})`, { pid: process.pid });
    try {
      await mkdir(this.opts.files.runDir, { recursive: true, mode: 0o700 });
      await chmod(this.opts.files.runDir, 0o700);
      this.control = await serveControl(this.opts.files.socket, (method, params) => this.handle(method, params));
      for (const spec of this.opts.forwards) await this.forwards.add(spec);
      if (this.opts.proxy) await this.startProxy(this.opts.proxy);
      // Watch before connecting: host changes made while the guest is reached are queued, not lost.
      await this.folders.start();
      let attached: Promise<void> | undefined;
      this.link.on('up', (client) => {
        attached = this.forwards.reverse.attach(client);
        void this.folders.attach(client);
      });
      this.link.on('down', () => {
        this.forwards.reverse.detach();
        this.folders.detach();
      });
      this.link.on('gone', (why: string) => void this.stop(`${why}; the agent stops with it`));
      await this.link.start(this.opts.connectTimeoutMs ?? 30_000);
      await attached;
      if (this.opts.autoPorts.enabled) {
        this.watch = new PortWatch(this.link, (entries) => void this.forwards.onGuestTable(entries, this.autoRules()), this.opts.pollMs);
        this.watch.start();
      }
    } catch (err) {
      emit('failed', (err as Error).message, { code: (err as { code?: unknown }).code, hint: (err as { hint?: unknown }).hint });
      this.stopping = this.shutdown();
      await this.stopping;
      this.events.close();
      this.resolveStopped('failed');
      throw err;
    }
    const warnings = [...this.forwards.warnings(), ...(this.proxyFailure ? [this.proxyFailure] : [])];
    const status = this.status();
    emit('ready', readySummary(status), { warnings, proxy: status.proxy?.address ?? null, forwards: status.forwards.length });
  }

  status(): AgentStatus {
    return {
      pid: process.pid,
      env: this.opts.envName,
      startedAt: this.started.toISOString(),
      uptimeMs: Date.now() - this.started.getTime(),
      configHash: this.opts.configHash,
      connection: this.link.info(),
      forwards: this.forwards.status(),
      proxy: this.proxy?.status() ?? null,
      autoPorts: this.opts.autoPorts.enabled,
      folders: this.folders.status(),
    };
  }

  /** Closes everything and writes `stopped`; safe to call more than once. */
  stop(reason = 'asked to stop'): Promise<void> {
    this.stopping ??= (async () => {
      await this.shutdown();
      this.events.emit('stopped', `agent stopped: ${reason}`);
      this.events.close();
      this.resolveStopped(reason);
    })();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.watch?.stop();
    await this.control?.close();
    await this.folders.close();
    await this.forwards.close();
    await this.proxy?.close();
    await this.link.close();
  }

  private handle(method: string, params: Record<string, unknown>): unknown {
    if (method === 'status') return this.status();
    if (method === 'sync-status') return this.folders.status();
    if (method === 'sync-wait') return this.folders.wait(typeof params.timeoutMs === 'number' ? params.timeoutMs : 60_000);
    if (method === 'stop') {
      setImmediate(() => void this.stop('asked to stop over the control socket'));
      return { stopping: true };
    }
    throw new EnvboxError('UNKNOWN_METHOD', `unknown method "${method}" (known: status, sync-status, sync-wait, stop)`);
  }

  private async startProxy(proxy: NonNullable<AgentOptions['proxy']>): Promise<void> {
    this.proxy = new GuestProxy({ envName: this.opts.envName, guestAddress: this.opts.guestAddress, link: this.link, auth: proxy.auth, emit: this.events.emit });
    try {
      await this.proxy.listen(proxy.port, proxy.pacPort, proxy.fallback);
    } catch (err) {
      this.proxyFailure = `the SOCKS5 proxy cannot listen on 127.0.0.1:${proxy.port}: ${(err as Error).message}`;
      this.events.emit('forward-failed', this.proxyFailure, { proxy: true });
      await this.proxy.close();
      this.proxy = undefined;
    }
  }

  private autoRules(): AutoPortRules {
    const exclude = new Set<number>([SSH_PORT]);
    for (const f of this.opts.forwards) {
      exclude.add(f.guestPort);
      if (f.kind === 'static' && f.protocol === 'tcp') exclude.add(f.hostPort);
    }
    const proxy = this.proxy?.status();
    if (proxy) exclude.add(proxy.port);
    return { only: this.opts.autoPorts.only, ignore: this.opts.autoPorts.ignore, exclude };
  }
}

function readySummary(status: AgentStatus): string {
  const active = status.forwards.filter((f) => f.state !== 'failed').length;
  const parts = [`${active} forward${active === 1 ? '' : 's'}`];
  if (status.proxy) parts.push(`SOCKS5 proxy on ${status.proxy.address}`);
  if (status.autoPorts) parts.push('watching guest ports');
  return `ready: ${parts.join(', ')} (${status.connection.path})`;
}
