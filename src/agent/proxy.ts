/**
 * The env's SOCKS5 proxy into the guest network, and the PAC file that routes only the guest's
 * names and address through it. The SOCKS server (socks/) never dials; this module is its dialer:
 * IP literals go straight to the guest link, names are resolved the guest's way (resolve.ts).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { EmitEvent } from './events.js';
import type { GuestLink } from './link.js';
import { GUEST_LOOPBACK, guestNameKind, GuestResolver } from './resolve.js';
import { DialError } from './socks/dial.js';
import { renderPac, servePac } from './socks/pac.js';
import { createSocksServer, type SocksServer, type Target } from './socks/server.js';

export interface ProxyOptions {
  envName: string;
  guestAddress: string;
  link: GuestLink;
  auth?: { username: string; password: string };
  emit: EmitEvent;
}

export interface ProxyStatus {
  address: string;
  port: number;
  pacUrl: string;
  auth: { username: string; password: string } | null;
  connections: number;
  total: number;
  refused: number;
}

export const PAC_PATH = '/proxy.pac';

export class GuestProxy {
  private readonly socks: SocksServer;
  private readonly pacServer: http.Server;
  private readonly resolver: GuestResolver;
  private port = 0;
  private pacPort = 0;

  constructor(private readonly opts: ProxyOptions) {
    this.resolver = new GuestResolver((command) => opts.link.exec(command));
    // On the fast path the relay speaks SOCKS5 itself and asks us only to resolve names.
    const request = { kind: 'socks' as const, envName: opts.envName, auth: opts.auth, resolve: (name: string) => this.resolver.resolve(name) };
    this.socks = createSocksServer({
      dial: (target, signal) => this.dial(target, signal),
      auth: opts.auth,
      handoff: (socket, onEnd, closing) => opts.link.handoff(socket, request, onEnd, closing),
      relay: { host: opts.link, request },
    });
    this.pacServer = http.createServer(servePac(() => this.pac()));
  }

  /**
   * Listens on 127.0.0.1: SOCKS on `port` and the PAC on `pacPort`. A port of 0 lets the kernel
   * choose; `fallback` says a taken port may be replaced by a free one (what `socks: auto` wants,
   * keeping the previous run's port when it can).
   */
  async listen(port: number, pacPort: number, fallback: boolean): Promise<{ port: number; pacPort: number }> {
    this.port = await bindOrFallback((p) => this.socks.listen(p, '127.0.0.1'), port, fallback);
    this.pacPort = await bindOrFallback((p) => listenHttp(this.pacServer, p), pacPort, true);
    const { address, pacUrl } = this.status();
    this.opts.emit('proxy-listening', `SOCKS5 proxy on ${address}, PAC file at ${pacUrl}`, { port: this.port, pacPort: this.pacPort });
    return { port: this.port, pacPort: this.pacPort };
  }

  status(): ProxyStatus {
    const stats = this.socks.stats();
    return {
      address: `127.0.0.1:${this.port}`,
      port: this.port,
      pacUrl: `http://127.0.0.1:${this.pacPort}${PAC_PATH}`,
      auth: this.opts.auth ?? null,
      connections: stats.active,
      total: stats.total,
      refused: stats.refused,
    };
  }

  async close(): Promise<void> {
    await this.socks.close();
    await new Promise<void>((resolve) => {
      this.pacServer.close(() => resolve());
      this.pacServer.closeAllConnections();
    });
  }

  private pac(): string {
    const name = this.opts.envName;
    return renderPac({ proxy: `127.0.0.1:${this.port}`, names: [name, `${name}.localhost`], addresses: [this.opts.guestAddress] });
  }

  private async dial(target: Target, signal: AbortSignal): Promise<Duplex> {
    const { link } = this.opts;
    if (target.kind !== 'domain') return link.dial(target.host, target.port, signal);
    if (guestNameKind(target.host, this.opts.envName) === 'loopback') return this.dialFirst(GUEST_LOOPBACK, target.port, signal);
    // Over SSH the guest's sshd resolves the name itself, with the guest's resolver.
    if (link.info().path === 'ssh') return link.dial(target.host, target.port, signal);
    return this.dialFirst(await this.resolver.resolve(target.host), target.port, signal);
  }

  /** Each address in turn until one connects, as a client walking getaddrinfo's list does. */
  private async dialFirst(addresses: string[], port: number, signal: AbortSignal): Promise<Duplex> {
    let last: unknown = new DialError('dns', 'no address to try');
    for (const address of addresses) {
      try {
        return await this.opts.link.dial(address, port, signal);
      } catch (err) {
        last = err;
        if (signal.aborted || !(err instanceof DialError) || !['refused', 'unreachable', 'network'].includes(err.kind)) break;
      }
    }
    throw last;
  }
}

async function bindOrFallback(bind: (port: number) => Promise<number>, port: number, fallback: boolean): Promise<number> {
  try {
    return await bind(port);
  } catch (err) {
    if (!fallback || port === 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    return bind(0);
  }
}

function listenHttp(server: http.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
