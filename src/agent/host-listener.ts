/**
 * A host port served either by this process or by the netns relay (the fast path). The relay
 * takes the listening socket itself: its threads accept and answer with no hop through the agent,
 * which is what keeps a connect through a forward or the proxy close to a direct one.
 *
 * The agent holds a descriptor of the socket the whole time. While the relay serves, that one is
 * idle (libuv never polls it); when the relay goes (the guest reboots, the relay dies) the agent
 * accepts on it again, so the port is never given up, and the next relay gets it back.
 *
 *   const listener = new HostListener(request, () => net.createServer(onConnection));
 *   await listener.listen({ host: '127.0.0.1', port });
 *   listener.offer(link);          // the link gives it to every relay it starts
 *   await listener.close();        // the relay stops too, and cuts the connections it serves
 */
import net from 'node:net';
import type { HandoffRequest, RelayCounts, RelayListener } from '../native/netns.js';

/** Who hands listeners to the relay: the guest link, which does nothing with them without one. */
export interface RelayHost {
  serve(listener: RelayListener): void;
  unserve(listener: RelayListener): void;
}

type Handle = { close(): void };

export class HostListener implements RelayListener {
  private server: net.Server | undefined;
  private holder: Handle | undefined;
  private relay: RelayHost | undefined;
  private closed = false;
  private boundPort = 0;

  // What the relays served: those gone (folded in when each went) and the current one's figures.
  private readonly past = { total: 0, in: 0, out: 0 };
  private current: RelayCounts = { active: 0, total: 0, in: 0, out: 0 };

  constructor(
    readonly request: HandoffRequest,
    private readonly makeServer: () => net.Server,
  ) {}

  /** Connections the relay served for this port, across relays: open now, in all, bytes of those that ended. */
  relayCounts(): RelayCounts {
    const { past, current } = this;
    return { active: current.active, total: past.total + current.total, in: past.in + current.in, out: past.out + current.out };
  }

  get port(): number {
    return this.boundPort;
  }

  /** The relay accepts on it now (this process only holds the socket). */
  get servedByRelay(): boolean {
    return this.holder !== undefined;
  }

  /** Binds and accepts here; rejects with the bind error (EADDRINUSE, EACCES, EADDRNOTAVAIL). */
  listen(options: net.ListenOptions): Promise<number> {
    const server = this.makeServer();
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => reject(err);
      server.once('error', fail);
      server.listen(options, () => {
        server.off('error', fail);
        this.server = server;
        this.boundPort = (server.address() as net.AddressInfo).port;
        resolve(this.boundPort);
      });
    });
  }

  /** From now on every relay `relay` starts serves this port (until close()). */
  offer(relay: RelayHost): void {
    if (this.closed || this.relay) return;
    this.relay = relay;
    relay.serve(this);
  }

  handle(): object | undefined {
    if (this.closed) return undefined;
    return (this.server as unknown as { _handle?: object | null } | undefined)?._handle ?? this.holder;
  }

  taken(holder: Handle): void {
    if (this.closed) return holder.close();
    // Our old descriptor goes, the socket stays: the relay's and `holder` refer to it.
    this.holder?.close();
    this.holder = holder;
    const server = this.server;
    this.server = undefined;
    server?.close();
  }

  released(): void {
    // Its connections went with it.
    this.past.total += this.current.total;
    this.past.in += this.current.in;
    this.past.out += this.current.out;
    this.current = { active: 0, total: 0, in: 0, out: 0 };
    if (this.closed || !this.holder || this.server) return;
    const server = this.makeServer();
    server.on('error', () => {});
    server.listen(this.holder);
    this.holder = undefined;
    this.server = server;
  }

  counted(counts: RelayCounts): void {
    this.current = counts;
  }

  /** Stops accepting here and at the relay, whose connections for this port are cut. */
  close(): Promise<void> {
    this.closed = true;
    this.relay?.unserve(this);
    this.holder?.close();
    this.holder = undefined;
    const server = this.server;
    this.server = undefined;
    if (!server?.listening) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }
}
