/**
 * A guest for the agent's unit tests, all in this process: a real ssh2 server on loopback (as in
 * mscdex/ssh2's test/common.js) with its own port space. "Guest ports" map to real loopback ports
 * where the test runs its services, so the guest's 8000 and the host's 8000 never meet, as with a
 * real guest. It serves what the agent asks of sshd: direct-tcpip (forwards, SOCKS), tcpip-forward
 * (reverse forwards), the listener poll (a made-up /proc/net/tcp) and getent; and a fake netns
 * relay that dials the same guest ports without SSH.
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2, { type Connection } from 'ssh2';
import { onTestFinished } from 'vitest';
import type { NetnsAccess } from '../../../src/agent/link.js';
import { FRAME_END, LISTENERS_COMMAND } from '../../../src/agent/portwatch.js';
import { DialError } from '../../../src/agent/socks/dial.js';
import type { NetnsDatagramChannel, NetnsDialer } from '../../../src/native/netns.js';
import { connect, ensureUserKey, generateHostKey, writeKnownHosts } from '../../../src/ssh/index.js';

export interface FakeGuest {
  /** The SSH server's port on 127.0.0.1. */
  port: number;
  /** `127.0.0.1:8000` / `::1:8000` in the guest → a real TCP service. */
  services: Map<string, { host: string; port: number }>;
  udpServices: Map<string, { host: string; port: number }>;
  /** What `getent ahosts NAME` answers. */
  names: Map<string, string[]>;
  /** Guest sockets in LISTEN, as the guest's /proc/net/tcp{,6} shows them: `127.0.0.1:3000`, `:::5000`. */
  listening: Set<string>;
  /** Guest port of a reverse forward → the real port its guest-side listener sits on. */
  reverse: Map<number, number>;
  /** Guest ports whose tcpip-forward requests are refused (already in use in the guest). */
  refuseReverse: Set<number>;
  dialed: { host: string; port: number }[];
  logins: number;
  /** Drops every SSH connection (sshd restarting, or the guest going away). */
  dropAll(): void;
  /** Stops accepting connections until start() again: a guest that is down. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Logs in as the agent does (pinned host key, env key). */
  login(timeoutMs: number): Promise<ssh2.Client>;
  /** A fake relay into the "guest network": same ports, no SSH. */
  netns(): NetnsAccess & { dials: number };
}

export async function startFakeGuest(): Promise<FakeGuest> {
  const dir = await mkdtemp(join(tmpdir(), 'envbox-fake-guest-'));
  const hostKey = await generateHostKey();
  const userKey = await ensureUserKey(join(dir, 'env'));
  const privateKey = await readFile(userKey.privateKeyPath, 'utf8');
  const knownHosts = join(dir, 'known_hosts');
  await writeKnownHosts(knownHosts, { publicKey: hostKey.publicKey, address: '127.0.0.1', alias: 'envbox-fake' });
  const parsed = ssh2.utils.parseKey(userKey.publicKey);
  if (parsed instanceof Error) throw parsed;
  const allowed = parsed;

  const conns = new Set<Connection>();
  const realServers = new Set<net.Server>();
  let server: ssh2.Server | undefined;
  let port = 0;

  const guest: FakeGuest = {
    port: 0,
    services: new Map(),
    udpServices: new Map(),
    names: new Map(),
    listening: new Set(),
    reverse: new Map(),
    refuseReverse: new Set(),
    dialed: [],
    logins: 0,
    dropAll: () => conns.forEach((c) => c.end()),
    stop: async () => {
      const s = server;
      server = undefined;
      conns.forEach((c) => c.end());
      if (s) await new Promise((resolve) => s.close(resolve));
    },
    start: async () => {
      server = new ssh2.Server({ hostKeys: [hostKey.privateKey] }, (conn) => serve(conn));
      await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
      port = (server.address() as net.AddressInfo).port;
      guest.port = port;
    },
    login: (timeoutMs) =>
      connect({ host: '127.0.0.1', port, username: 'dev', privateKey, knownHostsFile: knownHosts, hostAlias: 'envbox-fake', timeoutMs }),
    netns: () => fakeNetns(guest),
  };

  function serve(conn: Connection): void {
    conns.add(conn);
    const mine = new Set<net.Server>();
    (conn as unknown as { setNoDelay(on: boolean): void }).setNoDelay(true);
    conn.on('error', () => {});
    conn.on('close', () => {
      conns.delete(conn);
      for (const s of mine) s.close();
    });
    conn.on('authentication', (ctx) => {
      const ok =
        ctx.method === 'publickey' &&
        ctx.key.data.equals(allowed.getPublicSSH()) &&
        (!ctx.signature || allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo));
      if (ok) ctx.accept();
      else ctx.reject(['publickey']);
    });
    conn.on('ready', () => guest.logins++);
    conn.on('tcpip', (accept, reject, info) => {
      guest.dialed.push({ host: info.destIP, port: info.destPort });
      const target = lookup(guest, guest.services, info.destIP, info.destPort);
      if (!target) return reject();
      const socket = net.connect(target);
      socket.once('error', () => reject());
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        socket.on('error', () => {});
        const channel = accept();
        channel.on('error', () => {});
        channel.pipe(socket).pipe(channel);
      });
    });
    conn.on('request', (accept, reject, name, info) => {
      if (name !== 'tcpip-forward') return accept?.();
      const { bindAddr, bindPort } = info as ssh2.TcpipBindInfo;
      if (guest.refuseReverse.has(bindPort)) return reject?.();
      const listener = net.createServer({ allowHalfOpen: true }, (socket) => {
        socket.on('error', () => {});
        conn.forwardOut(bindAddr, bindPort, socket.remoteAddress!, socket.remotePort!, (err, channel) => {
          if (err) return socket.destroy();
          channel.on('error', () => {});
          socket.pipe(channel).pipe(socket);
        });
      });
      mine.add(listener);
      realServers.add(listener);
      listener.listen(0, '127.0.0.1', () => {
        guest.reverse.set(bindPort, (listener.address() as net.AddressInfo).port);
        accept?.();
      });
    });
    conn.on('session', (acceptSession) => {
      const session = acceptSession();
      session.on('pty', (ok) => ok?.());
      session.on('exec', (acceptExec, _reject, info) => {
        const channel = acceptExec();
        channel.on('error', () => {});
        if (info.command === LISTENERS_COMMAND) {
          const timer = setInterval(() => channel.write(`${procNetTcp(guest.listening)}${FRAME_END}\n`), 50);
          channel.on('close', () => clearInterval(timer));
          return;
        }
        const getent = /^getent ahosts '?([^']+)'?$/.exec(info.command);
        if (getent) {
          const addresses = guest.names.get(getent[1]!);
          // Answered at once: the confirmation and the exit status may reach the client in one read.
          if (addresses) channel.write(addresses.map((a) => `${a}      STREAM ${getent[1]}\n`).join(''));
          channel.exit(addresses ? 0 : 2);
          return void channel.end();
        }
        // `exec sleep infinity` (the agent's interactive-mode session): held open until the connection goes.
        if (/sleep infinity/.test(info.command)) return;
        channel.exit(127);
        channel.end();
      });
    });
  }

  await guest.start();
  onTestFinished(async () => {
    await guest.stop();
    for (const s of realServers) s.close();
    await rm(dir, { recursive: true, force: true });
  });
  return guest;
}

/** A guest address:port → the real service behind it; `localhost` tries IPv4 then IPv6, names their getent answer. */
function lookup(guest: FakeGuest, map: Map<string, { host: string; port: number }>, host: string, guestPort: number) {
  const candidates = host === 'localhost' ? ['127.0.0.1', '::1'] : (guest.names.get(host) ?? [host]);
  for (const ip of candidates) {
    const hit = map.get(`${ip}:${guestPort}`);
    if (hit) return hit;
  }
  return undefined;
}

/** `/proc/net/tcp` lines for the given listeners (IPv4 words little-endian, as on x86 and arm64). */
export function procNetTcp(listening: Iterable<string>): string {
  const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
  const lines = [...listening].map((entry, i) => {
    const at = entry.lastIndexOf(':');
    const ip = entry.slice(0, at);
    const port = Number(entry.slice(at + 1)).toString(16).toUpperCase().padStart(4, '0');
    const hex = ip.includes(':') ? v6Hex(ip) : Buffer.from(ip.split('.').map(Number).reverse()).toString('hex').toUpperCase();
    const zero = ip.includes(':') ? '0'.repeat(32) : '00000000';
    return `${String(i).padStart(4)}: ${hex}:${port} ${zero}:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 ${1000 + i} 1 0000000000000000 100 0 0 10 0\n`;
  });
  return header + lines.join('');
}

function v6Hex(ip: string): string {
  const bytes = Buffer.alloc(16);
  const [head, tail = ''] = ip.split('::') as [string, string?];
  const groups = (s: string) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t].forEach((g, i) => bytes.writeUInt16BE(g, i * 2));
  for (let i = 0; i < 16; i += 4) bytes.subarray(i, i + 4).reverse();
  return bytes.toString('hex').toUpperCase();
}

function fakeNetns(guest: FakeGuest): NetnsAccess & { dials: number } {
  const access = {
    dials: 0,
    pid: async () => process.pid,
    start: async (): Promise<{ dialer: NetnsDialer }> => {
      const dialer: NetnsDialer = {
        relayPid: process.pid,
        socketPath: '/nonexistent',
        dial: (target) =>
          new Promise((resolve, reject) => {
            access.dials++;
            const real = lookup(guest, guest.services, target.host, target.port);
            if (!real) return reject(new DialError('refused', `${target.host}:${target.port} inside the guest: Connection refused (ECONNREFUSED)`));
            const socket = net.connect({ ...real, allowHalfOpen: true });
            socket.once('connect', () => resolve(socket));
            socket.once('error', (err) => reject(new DialError('refused', err.message)));
          }),
        udp: async (target) => {
          const real = lookup(guest, guest.udpServices, target.host, target.port);
          if (!real) throw new DialError('refused', 'no such UDP service');
          const socket = dgram.createSocket(real.host.includes(':') ? 'udp6' : 'udp4');
          const channel = Object.assign(new EventEmitter(), {
            send: (msg: Buffer) => socket.send(msg, real.port, real.host),
            close: () => socket.close(),
          });
          socket.on('message', (msg) => channel.emit('message', msg));
          socket.on('close', () => channel.emit('close'));
          return channel as unknown as NetnsDatagramChannel;
        },
        close: async () => {},
      };
      return { dialer };
    },
  };
  return access;
}
