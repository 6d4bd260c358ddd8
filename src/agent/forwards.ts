/**
 * Every host-side forward of one env: the Envfile's static ones (TCP and UDP), its reverse ones,
 * and those that follow the guest's listeners (auto_ports). Listeners are bound once and stay bound
 * across guest reconnects; what each is doing is reported by status().
 */
import { diffAutoPorts, wantedAutoPorts, type AutoPortRules } from './autoports.js';
import type { EmitEvent } from './events.js';
import type { GuestLink } from './link.js';
import { ReverseForwards } from './portfwd/reverse.js';
import { describeForward, type ForwardCounters, type ForwardSpec, type ForwardStatus } from './portfwd/spec.js';
import { TcpForward } from './portfwd/tcp.js';
import { UdpForward } from './portfwd/udp.js';
import type { SocketEntry } from './procnet.js';

interface Bound {
  spec: ForwardSpec;
  forward?: { stats(): ForwardCounters; close(): Promise<void> };
  failure?: string;
}

export class Forwards {
  private readonly fixed: Bound[] = [];
  private readonly auto = new Map<number, Bound & { guestIp: string }>();
  readonly reverse: ReverseForwards;
  private latestTable: SocketEntry[] | undefined;
  private applying = false;

  constructor(
    private readonly link: GuestLink,
    private readonly emit: EmitEvent,
    /** The provider can enter the guest's network namespace: the only way UDP gets there. */
    private readonly canUdp: boolean,
  ) {
    this.reverse = new ReverseForwards(emit);
  }

  /** Binds a static forward's host listener (or registers a reverse one); failures are reported, not thrown. */
  async add(spec: ForwardSpec): Promise<void> {
    if (spec.kind === 'reverse') return this.reverse.add(spec);
    const entry: Bound = { spec };
    this.fixed.push(entry);
    await this.bind(entry);
  }

  /**
   * One poll of the guest's listeners: start and stop auto forwards to match. Polls that arrive
   * while one is being applied collapse into the latest, so changes never interleave.
   */
  async onGuestTable(entries: SocketEntry[], rules: AutoPortRules): Promise<void> {
    this.latestTable = entries;
    if (this.applying) return;
    this.applying = true;
    try {
      let table: SocketEntry[] | undefined;
      while ((table = this.latestTable)) {
        this.latestTable = undefined;
        await this.applyTable(table, rules);
      }
    } finally {
      this.applying = false;
    }
  }

  private async applyTable(entries: SocketEntry[], rules: AutoPortRules): Promise<void> {
    const current = new Map([...this.auto].map(([port, e]) => [port, e.guestIp]));
    const { add, remove } = diffAutoPorts(current, wantedAutoPorts(entries, rules));
    for (const port of remove) {
      const entry = this.auto.get(port)!;
      this.auto.delete(port);
      await entry.forward?.close();
      if (!entry.failure) this.emit('forward-removed', `guest port ${port} closed: ${describeForward(entry.spec)}`, { forward: entry.spec });
    }
    for (const { port, guestIp } of add) {
      const spec: ForwardSpec = { id: `auto:${port}`, kind: 'auto', protocol: 'tcp', hostIp: '127.0.0.1', hostPort: port, guestIp, guestPort: port };
      const entry = { spec, guestIp };
      this.auto.set(port, entry); // before binding, so the next poll does not add it twice
      this.emit('port-detected', `the guest listens on ${guestIp.includes(':') ? `[${guestIp}]` : guestIp}:${port}`, { port, guestIp });
      await this.bind(entry);
    }
  }

  status(): ForwardStatus[] {
    const connected = this.link.state === 'connected';
    const { path, netnsUnavailable } = this.link.info();
    const one = (e: Bound): ForwardStatus => {
      const counters = e.forward?.stats() ?? { connections: 0, total: 0, bytesIn: 0, bytesOut: 0 };
      if (e.failure) return { ...e.spec, ...counters, state: 'failed', message: e.failure };
      if (e.spec.protocol === 'udp' && connected && path !== 'netns') {
        return { ...e.spec, ...counters, state: 'waiting', message: `UDP needs the guest network namespace: ${netnsUnavailable ?? 'not available'}` };
      }
      return { ...e.spec, ...counters, state: connected ? 'active' : 'waiting' };
    };
    const auto = [...this.auto.values()].sort((a, b) => a.spec.guestPort - b.spec.guestPort);
    return [...this.fixed.map(one), ...this.reverse.status(connected), ...auto.map(one)];
  }

  /** Problems worth telling the user when the agent is ready. */
  warnings(): string[] {
    return this.status()
      .filter((f) => f.state === 'failed' || (f.state === 'waiting' && f.message))
      .map((f) => `${describeForward(f)}: ${f.message}`);
  }

  async close(): Promise<void> {
    this.reverse.close();
    const all = [...this.fixed, ...this.auto.values()];
    await Promise.all(all.map((e) => e.forward?.close()));
  }

  private async bind(entry: Bound): Promise<void> {
    const { spec } = entry;
    if (spec.protocol === 'udp' && !this.canUdp) {
      entry.failure = 'UDP cannot be forwarded over SSH; only a local container (provider: container) carries it';
      this.emit('forward-failed', `${describeForward(spec)}: ${entry.failure}`, { forward: spec });
      return;
    }
    const target = { guestIp: spec.guestIp, guestPort: spec.guestPort };
    const forward =
      spec.protocol === 'udp'
        ? new UdpForward(target, (host, port) => this.link.udp(host, port))
        : new TcpForward(
            target,
            (host, port, signal) => this.link.dial(host, port, signal),
            (socket, onEnd, closing) => this.link.handoff(socket, { kind: 'forward', host: spec.guestIp, port: spec.guestPort }, onEnd, closing),
            this.link,
          );
    try {
      await forward.listen(spec.hostIp, spec.hostPort);
      entry.forward = forward;
      this.emit('forward-added', describeForward(spec), { forward: spec });
    } catch (err) {
      await forward.close();
      entry.failure = bindFailure(err as NodeJS.ErrnoException, spec);
      this.emit('forward-failed', `${describeForward(spec)}: ${entry.failure}`, { forward: spec });
    }
  }
}

function bindFailure(err: NodeJS.ErrnoException, spec: ForwardSpec): string {
  const at = `${spec.hostIp}:${spec.hostPort}`;
  if (err.code === 'EADDRINUSE') return `host port ${spec.hostPort} is taken by another program (${at})`;
  if (err.code === 'EACCES') return `no permission to listen on ${at} (ports below 1024 need root)`;
  if (err.code === 'EADDRNOTAVAIL') return `${spec.hostIp} is not an address of this host`;
  return `cannot listen on ${at}: ${err.message}`;
}
