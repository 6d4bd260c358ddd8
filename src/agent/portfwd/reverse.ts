/**
 * Reverse forwards: the guest's localhost:guestPort reaches a service on the host's loopback. The
 * guest side is sshd's own listener (a `tcpip-forward` request, as `ssh -R` makes), which sshd keeps
 * on the guest's loopback under its default GatewayPorts=no. Each SSH connection needs the requests
 * made again, so the agent calls attach() after every (re)connect.
 */
import net from 'node:net';
import type { Client, ClientChannel, TcpConnectionDetails } from 'ssh2';
import type { EmitEvent } from '../events.js';
import { Counters, relay } from './tcp.js';
import { describeForward, type ForwardSpec, type ForwardStatus } from './spec.js';

// What sshd binds under GatewayPorts=no whatever we ask; asked for explicitly so the forward says so.
const GUEST_LOOPBACK = '127.0.0.1';

interface Entry {
  spec: ForwardSpec;
  counters: Counters;
  bound: boolean;
  failure?: string;
}

export class ReverseForwards {
  private readonly entries: Entry[] = [];
  private client: Client | undefined;

  constructor(private readonly emit: EmitEvent) {}

  add(spec: ForwardSpec): void {
    const entry: Entry = { spec, counters: new Counters(true), bound: false };
    if (spec.protocol !== 'tcp') entry.failure = 'reverse forwards carry TCP only (SSH has no UDP forwarding)';
    this.entries.push(entry);
    if (entry.failure) this.emit('forward-failed', `${describeForward(spec)}: ${entry.failure}`, { forward: spec });
  }

  /** Asks the new connection's sshd for every guest listener. */
  async attach(client: Client): Promise<void> {
    this.client = client;
    client.on('tcp connection', (details, accept, reject) => this.incoming(details, accept, reject));
    await Promise.all(this.entries.filter((e) => e.spec.protocol === 'tcp').map((e) => this.bind(client, e)));
  }

  /** The connection is gone, and sshd's listeners with it. */
  detach(): void {
    this.client = undefined;
    for (const e of this.entries) e.bound = false;
  }

  status(connected: boolean): ForwardStatus[] {
    return this.entries.map((e) => ({
      ...e.spec,
      ...e.counters.snapshot(),
      state: e.failure ? 'failed' : e.bound && connected ? 'active' : 'waiting',
      ...(e.failure ? { message: e.failure } : {}),
    }));
  }

  close(): void {
    for (const e of this.entries) e.counters.destroyAll();
    this.client = undefined;
  }

  private bind(client: Client, entry: Entry): Promise<void> {
    return new Promise((resolve) => {
      const done = (err: Error | undefined) => {
        if (this.client !== client) return resolve();
        const failure = err ? `the guest's sshd refused to listen on port ${entry.spec.guestPort}: ${err.message}` : undefined;
        // Say it once per change, not on every reconnect.
        if (failure && failure !== entry.failure) this.emit('forward-failed', `${describeForward(entry.spec)}: ${failure}`, { forward: entry.spec });
        if (!failure && (entry.failure || !entry.bound)) this.emit('forward-added', describeForward(entry.spec), { forward: entry.spec });
        entry.failure = failure;
        entry.bound = !failure;
        resolve();
      };
      try {
        client.forwardIn(GUEST_LOOPBACK, entry.spec.guestPort, (err) => done(err ?? undefined));
      } catch (err) {
        done(err as Error);
      }
    });
  }

  private incoming(details: TcpConnectionDetails, accept: () => ClientChannel, reject: () => void): void {
    const entry = this.entries.find((e) => e.bound && e.spec.guestPort === details.destPort);
    if (!entry) return reject();
    const socket = net.connect({ host: entry.spec.hostIp, port: entry.spec.hostPort, allowHalfOpen: true });
    socket.setNoDelay(true);
    socket.once('error', () => reject());
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      entry.counters.track(socket);
      relay(accept(), socket);
    });
  }
}
