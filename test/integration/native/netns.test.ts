/**
 * native/nsrelay and startNetnsDialer against a network namespace this test makes itself
 * (envbox-test-<random>, only lo plus a veth pair that leads nowhere). A server inside it
 * listens on 127.0.0.1 and ::1; a server on the host's 127.0.0.1 listens on the same port
 * with a different greeting, so a stream that reaches "ns" proves the namespace was used.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostListener, type RelayHost } from '../../../src/agent/host-listener.js';
import { DialError, replyFor } from '../../../src/agent/socks/dial.js';
import { Reply } from '../../../src/agent/socks/protocol.js';
import { nativeHelperPath } from '../../../src/native/locate.js';
import { startNetnsDialer, type HandoffEnd, type HandoffRequest, type NetnsDialer } from '../../../src/native/netns.js';
import { SocksClient } from 'socks';

const RELAY = nativeHelperPath('nsrelay');
const usable = RELAY !== undefined && process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;

const SINK_PORT = 7101; // inside the namespace: reads to EOF, answers "<bytes> <sha256>"
const UDP_PORT = 7102; // inside the namespace: answers each datagram with "ns:" + it
const BLACKHOLE = '10.77.0.2'; // a neighbour on the veth that never answers: connects hang
const NO_ROUTE_HOST = '10.66.0.1'; // an "unreachable" route: EHOSTUNREACH

// The guest side: echo (after a "ns\n" greeting) on argv[1], sink and UDP echo, on both loopbacks.
const GUEST_SERVERS = `
import net from 'node:net'; import dgram from 'node:dgram'; import { createHash } from 'node:crypto';
const [port, sinkPort, udpPort] = process.argv.slice(1).map(Number);
const echo = (s) => { s.on('error', () => {}); s.write('ns\\n'); s.pipe(s); };
const sink = (s) => {
  s.on('error', () => {});
  const hash = createHash('sha256'); let bytes = 0;
  s.on('data', (d) => { hash.update(d); bytes += d.length; });
  s.on('end', () => s.end(bytes + ' ' + hash.digest('hex') + '\\n'));
};
const listening = [];
for (const host of ['127.0.0.1', '::1']) {
  for (const [p, handler] of [[port, echo], [sinkPort, sink]]) {
    const server = net.createServer({ allowHalfOpen: true }, handler);
    listening.push(new Promise((ok) => server.listen(p, host, ok)));
  }
  const udp = dgram.createSocket(host === '::1' ? 'udp6' : 'udp4');
  udp.on('message', (m, from) => udp.send(Buffer.concat([Buffer.from('ns:'), m]), from.port, from.address));
  listening.push(new Promise((ok) => udp.bind(udpPort, host, ok)));
}
await Promise.all(listening);
console.log('ready');
`;

/** A SOCKS5 CONNECT through the proxy on 127.0.0.1:proxy; resolves with the connected socket. */
async function viaSocks(proxy: number, host: string, target: number, credentials?: { userId: string; password: string }): Promise<Socket> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: proxy, type: 5, ...credentials },
    command: 'connect',
    destination: { host, port: target },
    timeout: 5_000,
  });
  return socket;
}

const started: ChildProcess[] = [];
const dialers: NetnsDialer[] = [];
let ns = '';
let tmp = '';
let guestPid = 0;
let port = 0;
let hostServer: Server | undefined;

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
}

function track(child: ChildProcess): ChildProcess {
  started.push(child);
  return child;
}

async function firstLine(child: ChildProcess): Promise<string> {
  let out = '';
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    if (out.includes('\n')) return out.split('\n')[0]!;
  }
  throw new Error(`no output; exit ${child.exitCode}`);
}

function collect(stream: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve, reject) => {
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

async function send(stream: Duplex, data: Buffer, chunk = 1 << 20): Promise<Buffer> {
  const received = collect(stream);
  for (let at = 0; at < data.length; at += chunk) {
    if (!stream.write(data.subarray(at, at + chunk))) await once(stream, 'drain');
  }
  stream.end();
  return received;
}

/** A SOCKS5 CONNECT request for host (IP literal or name) and port. */
function connectRequest(host: string, target: number): Buffer {
  const portBytes = [target >> 8, target & 0xff];
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return Buffer.from([5, 1, 0, 1, ...host.split('.').map(Number), ...portBytes]);
  return Buffer.from([5, 1, 0, 3, host.length, ...Buffer.from(host, 'latin1'), ...portBytes]);
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Alive and not a zombie (PID 1 here may be slow to reap). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const threads = (pid: number): number => Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const fds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;
// The relay's main thread, its IPC reader, the acceptor threads it keeps parked between connections
// (IDLE_MAX) and the pump threads it parks where a connection's bytes are copied (PUMP_IDLE_MAX).
const PARKED_THREADS_MAX = 1 + 1 + 4 + 4;

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  for (const deadline = Date.now() + ms; !check(); ) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms: ${check}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function dialError(promise: Promise<unknown>): Promise<DialError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DialError);
  return err as DialError;
}

async function newDialer(
  name: string,
  extra: { pid?: number; connectTimeoutMs?: number; headerTimeoutMs?: number; onExit?: (reason: string) => void } = {},
): Promise<NetnsDialer> {
  const { dialer, reason } = await startNetnsDialer({ pid: guestPid, runDir: join(tmp, name), ...extra });
  expect(reason).toBeUndefined();
  dialers.push(dialer!);
  return dialer!;
}

describe.skipIf(!usable)('relay into a network namespace (root, ip netns)', () => {
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'envbox-nsrelay-'));
    ns = `envbox-test-${randomBytes(4).toString('hex')}`;
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'add', 'bh0', 'type', 'veth', 'peer', 'name', 'bh1');
    ip('-n', ns, 'addr', 'add', '10.77.0.1/24', 'dev', 'bh0');
    ip('-n', ns, 'link', 'set', 'bh0', 'up');
    ip('-n', ns, 'link', 'set', 'bh1', 'up');
    ip('-n', ns, 'neigh', 'add', BLACKHOLE, 'lladdr', '02:00:00:00:00:02', 'dev', 'bh0');
    ip('-n', ns, 'route', 'add', 'unreachable', '10.66.0.0/16');

    hostServer = createServer((s) => s.end('host\n'));
    hostServer.listen(0, '127.0.0.1');
    await once(hostServer, 'listening');
    port = (hostServer.address() as { port: number }).port;

    const guest = track(spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', GUEST_SERVERS, String(port), String(SINK_PORT), String(UDP_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    expect(await firstLine(guest)).toBe('ready');
    guestPid = guest.pid!;
    expect(readlinkSync(`/proc/${guestPid}/ns/net`)).not.toBe(readlinkSync('/proc/self/ns/net'));
  });

  afterAll(async () => {
    await Promise.allSettled(dialers.map((d) => d.close()));
    for (const child of started) if (child.pid && alive(child.pid)) process.kill(child.pid, 'SIGKILL');
    hostServer?.close();
    if (ns) spawnSync('ip', ['netns', 'del', ns]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('nsrelay wire protocol', () => {
    let relay: ChildProcess;
    let socketPath = '';
    let idleFds = 0;

    beforeAll(async () => {
      socketPath = join(tmp, 'raw.sock');
      relay = track(spawn(RELAY!, ['--pid', String(guestPid), '--socket', socketPath, '--header-timeout-ms', '300'], { stdio: ['pipe', 'pipe', 'pipe'] }));
      expect(await firstLine(relay)).toBe('READY 1');
      idleFds = fds(relay.pid!);
    });

    afterAll(() => relay.stdin!.end());

    /** Sends `bytes` (then half-closes unless told not to) and returns all the relay answers. */
    async function raw(bytes: string | Buffer, opts: { end?: boolean } = {}): Promise<string> {
      const socket = connect(socketPath);
      const received = collect(socket);
      socket.write(bytes);
      if (opts.end !== false) socket.end();
      return (await received).toString('latin1');
    }

    it('binds its socket 0600 and connects inside the namespace, early data included', async () => {
      expect(statSync(socketPath).mode & 0o777).toBe(0o600);
      expect(await raw(`TCP 127.0.0.1 ${port}\nhello`)).toBe('OK\nns\nhello');
      expect(await raw(`TCP [::1] ${port} 2000\n`)).toBe('OK\nns\n');
      expect(await raw(`TCP localhost ${port}\n`)).toBe('OK\nns\n');
    });

    it.each([
      'XYZ',
      'TCP 127.0.0.1',
      'TCP 127.0.0.1 0',
      'TCP 127.0.0.1 65536',
      'TCP 127.0.0.1 +80',
      'TCP  127.0.0.1 80',
      'TCP 127.0.0.1 80 ',
      'TCP 127.0.0.1 80 0',
      'UDP 127.0.0.1 80 100',
      'TCP 127.0.0.1 80\r',
      'tcp 127.0.0.1 80',
      '',
    ])('answers BADREQ to %j and keeps serving', async (line) => {
      expect(await raw(`${line}\n`)).toMatch(/^ERR BADREQ /);
      expect(await raw(`TCP 127.0.0.1 ${port}\n`)).toBe('OK\nns\n');
    });

    it('bounds the request line and the time to send it', async () => {
      expect(await raw('A'.repeat(300))).toBe('ERR BADREQ request line longer than 255 bytes\n');
      const started = Date.now();
      expect(await raw('TCP 127.0', { end: false })).toBe('ERR BADREQ no request line in time\n');
      expect(Date.now() - started).toBeLessThan(3_000);
    });

    it('refuses names and reports errno names', async () => {
      expect(await raw('TCP example.com 80\n')).toMatch(/^ERR NOTLITERAL /);
      expect(await raw('TCP 127.0.0.1 1\n')).toBe('ERR ECONNREFUSED Connection refused\n');
      expect(await raw('TCP 10.255.255.1 80\n')).toMatch(/^ERR ENETUNREACH /);
      expect(await raw(`TCP ${NO_ROUTE_HOST} 80\n`)).toMatch(/^ERR EHOSTUNREACH /);
      expect(await raw(`TCP ${BLACKHOLE} 80 200\n`)).toMatch(/^ERR ETIMEDOUT /);
    });

    it('frees a connection whose client leaves mid-connect, without waiting for the timeout', async () => {
      const pid = relay.pid!;
      await until(() => fds(pid) === idleFds);
      const socket = connect(socketPath);
      socket.on('error', () => {});
      socket.write(`TCP ${BLACKHOLE} 80 60000\n`);
      await until(() => fds(pid) === idleFds + 2); // the client and the connecting socket
      socket.destroy();
      await until(() => fds(pid) === idleFds, 2_000);
      expect(threads(pid)).toBeLessThanOrEqual(PARKED_THREADS_MAX);
    });

    it('replaces a socket left by a killed relay, exits on stdin EOF and removes its socket', async () => {
      const path = join(tmp, 'stale.sock');
      const first = track(spawn(RELAY!, ['--pid', String(guestPid), '--socket', path], { stdio: ['pipe', 'pipe', 'pipe'] }));
      expect(await firstLine(first)).toBe('READY 1');
      first.kill('SIGKILL');
      await once(first, 'close');
      expect(existsSync(path)).toBe(true);
      const second = track(spawn(RELAY!, ['--pid', String(guestPid), '--socket', path], { stdio: ['pipe', 'pipe', 'pipe'] }));
      expect(await firstLine(second)).toBe('READY 1');
      second.stdin!.end();
      const [code] = (await once(second, 'close')) as [number];
      expect(code).toBe(0);
      expect(existsSync(path)).toBe(false);
    });

    it('exits when its parent dies, even with its stdin still open', async () => {
      const path = join(tmp, 'orphan.sock');
      // The relay's stdin is the parent's, a pipe this test holds: only PR_SET_PDEATHSIG can stop it.
      const parentScript = `
        const { spawn } = require('node:child_process');
        const relay = spawn(process.argv[1], ['--pid', process.argv[2], '--socket', process.argv[3]], { stdio: ['inherit', 'pipe', 'inherit'] });
        relay.stdout.once('data', () => console.log(relay.pid));`;
      const parent = track(spawn(process.execPath, ['-e', parentScript, RELAY!, String(guestPid), path], { stdio: ['pipe', 'pipe', 'inherit'] }));
      const relayPid = Number(await firstLine(parent));
      expect(alive(relayPid)).toBe(true);
      parent.kill('SIGKILL');
      await until(() => !alive(relayPid) && !existsSync(path));
      parent.stdin!.end();
    });

    it('joins through the guest user namespace when it runs as the user owning it (--userns)', async () => {
      const nobody = ['--reuid', '65534', '--regid', '65534', '--clear-groups'];
      const dir = mkdtempSync(join(tmpdir(), 'envbox-nsrelay-nobody-'));
      try {
        chownSync(dir, 65534, 65534);
        const server = `require('node:net').createServer((s) => s.end('userns\\n')).listen(${port}, '127.0.0.1', () => console.log('ready'))`;
        const guest = track(spawn('setpriv', [...nobody, 'unshare', '--user', '--map-root-user', '--net', 'sh', '-c', 'ip link set lo up && exec "$0" -e "$1"', process.execPath, server], { stdio: ['ignore', 'pipe', 'inherit'] }));
        expect(await firstLine(guest)).toBe('ready');
        const pid = String(guest.pid);
        const path = join(dir, 'relay.sock');

        const denied = spawnSync('setpriv', [...nobody, RELAY!, '--pid', pid, '--socket', path], { input: '', encoding: 'utf8' });
        expect([denied.status, denied.stderr]).toEqual([1, 'nsrelay: entering the network namespace: Operation not permitted\n']);
        expect(existsSync(path)).toBe(false);

        const relay = track(spawn('setpriv', [...nobody, RELAY!, '--pid', pid, '--socket', path, '--userns', `/proc/${pid}/ns/user`], { stdio: ['pipe', 'pipe', 'inherit'] }));
        expect(await firstLine(relay)).toBe('READY 1');
        const socket = connect(path);
        const answer = collect(socket);
        socket.end(`TCP 127.0.0.1 ${port}\n`);
        expect((await answer).toString()).toBe('OK\nuserns\n');
        relay.stdin!.end();
        await once(relay, 'close');
        expect(existsSync(path)).toBe(false);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('rejects bad usage and a process that does not exist', () => {
      expect(spawnSync(RELAY!, [], { input: '' }).status).toBe(2);
      const gone = spawnSync(RELAY!, ['--pid', '2147483646', '--socket', join(tmp, 'none.sock')], { input: '', encoding: 'utf8' });
      expect(gone.status).toBe(1);
      expect(gone.stderr).toMatch(/^nsrelay: process 2147483646: No such process/);
    });
  });

  describe('connections handed over to the relay', () => {
    let dialer: NetnsDialer;
    let idleFds = 0;
    const servers: Server[] = [];
    const ends: HandoffEnd[] = [];
    const resolved: string[] = [];
    const auth = { username: 'dev', password: 'p"w\\ d' };
    const settled = (): Promise<void> => until(() => fds(dialer.relayPid!) === idleFds && threads(dialer.relayPid!) <= PARKED_THREADS_MAX);

    /** A host listener that hands every connection to the relay, as the agent's forwards and proxy do. */
    async function handing(request: () => HandoffRequest): Promise<number> {
      const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
        if (!dialer.handoff!(socket, request(), (end) => ends.push(end))) socket.destroy();
      });
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      return (server.address() as { port: number }).port;
    }

    const names: Record<string, string[]> = { 'db.internal': ['10.66.0.9', '127.0.0.1'], 'down.internal': ['10.66.0.9'] };
    const socksRequest = (withAuth = false): HandoffRequest => ({
      kind: 'socks',
      envName: 'WebApp',
      auth: withAuth ? auth : undefined,
      resolve: async (name) => {
        resolved.push(name);
        const found = names[name];
        if (!found) throw new DialError('dns', `${name} is not known`);
        return found;
      },
    });

    /** Raw bytes to the proxy; resolves with everything it answered once it closed. */
    async function rawSocks(proxy: number, bytes: Buffer, opts: { end?: boolean } = {}): Promise<Buffer> {
      const socket = connect(proxy, '127.0.0.1');
      socket.on('error', () => {});
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.write(bytes);
      if (opts.end) socket.end();
      // A reset (an 'error') is one way to be closed; events.once would reject on it.
      await new Promise((resolve) => socket.once('close', resolve));
      return Buffer.concat(chunks);
    }

    beforeAll(async () => {
      dialer = await newDialer('handoff', { headerTimeoutMs: 500, connectTimeoutMs: 1_000 });
      idleFds = fds(dialer.relayPid!);
    });

    afterAll(() => {
      for (const server of servers) server.close();
    });

    it('forwards a connection inside the namespace and reports its bytes', async () => {
      ends.length = 0;
      const forward = await handing(() => ({ kind: 'forward', host: '127.0.0.1', port }));
      const data = randomBytes(4 << 20);
      const back = await send(connect(forward, '127.0.0.1'), data);
      expect(back.subarray(0, 3).toString()).toBe('ns\n');
      expect(sha(back.subarray(3))).toBe(sha(data));
      await until(() => ends.length === 1);
      expect(ends[0]).toEqual({ in: data.length, out: data.length + 3 });

      const sink = await handing(() => ({ kind: 'forward', host: '::1', port: SINK_PORT }));
      const small = randomBytes(1000);
      const answer = `${small.length} ${sha(small)}\n`;
      expect((await send(connect(sink, '127.0.0.1'), small)).toString()).toBe(answer);
      await until(() => ends.length === 2);
      expect(ends[1]).toEqual({ in: small.length, out: answer.length });
      await settled();
    });

    it('resets a forwarded client when nothing listens in the guest', async () => {
      ends.length = 0;
      const nowhere = await handing(() => ({ kind: 'forward', host: '127.0.0.1', port: 1 }));
      const socket = connect(nowhere, '127.0.0.1');
      const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
      expect(err.code).toBe('ECONNRESET');
      await until(() => ends.length === 1);
      expect(ends.pop()).toEqual({ in: 0, out: 0 });
    });

    it('cuts a handed-over connection when its signal aborts (its forward or proxy went)', async () => {
      const closing = new AbortController();
      const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
        if (!dialer.handoff!(socket, { kind: 'forward', host: '127.0.0.1', port }, (end) => ends.push(end), closing.signal)) socket.destroy();
      });
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const live = connect((server.address() as { port: number }).port, '127.0.0.1');
      live.on('error', () => {});
      const [greeting] = (await once(live, 'data')) as [Buffer];
      expect(greeting.toString()).toBe('ns\n');
      ends.length = 0;
      const cut = once(live, 'close');
      closing.abort();
      await cut;
      await until(() => ends.length === 1);
      await settled();
    });

    it('refuses a target the relay cannot dial, so the caller serves it', () => {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      expect(dialer.handoff!(socket, { kind: 'forward', host: 'db.internal', port: 80 }, () => {})).toBe(false);
      socket.destroy();
    });

    it('speaks SOCKS5: addresses, the guest names, names resolved by the agent, in order', async () => {
      const proxy = await handing(() => socksRequest());
      for (const host of ['127.0.0.1', '::1', 'localhost', 'app.localhost', 'webapp', 'api.WebApp.', 'db.internal']) {
        const socket = await viaSocks(proxy, host, port);
        expect((await send(socket, Buffer.from('hi'))).toString()).toBe('ns\nhi');
      }
      // Only the name that is not the guest's own was asked for; its unreachable first address was skipped.
      expect(resolved).toEqual(['db.internal']);
      await settled();
    });

    it('answers with the reply code of each failure', async () => {
      const proxy = await handing(() => socksRequest());
      const reply = async (host: string, target: number) => (await rawSocks(proxy, Buffer.concat([Buffer.from([5, 1, 0]), connectRequest(host, target)])))[3];
      expect(await reply('127.0.0.1', 1)).toBe(Reply.connectionRefused);
      expect(await reply('down.internal', 80)).toBe(Reply.hostUnreachable);
      expect(await reply('unknown.internal', 80)).toBe(Reply.hostUnreachable);
      expect(await reply('10.255.255.1', 80)).toBe(Reply.networkUnreachable);
      expect(await reply(BLACKHOLE, 80)).toBe(Reply.ttlExpired);
      expect(await reply('bad name!', 80)).toBe(Reply.hostUnreachable);
      // BIND and UDP ASSOCIATE are not supported; an unknown address type neither.
      expect(await rawSocks(proxy, Buffer.from([5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]))).toEqual(Buffer.from([5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]));
      expect((await rawSocks(proxy, Buffer.from([5, 1, 0, 5, 3, 0, 1, 127, 0, 0, 1, 0, 80])))[3]).toBe(7);
      expect((await rawSocks(proxy, Buffer.from([5, 1, 0, 5, 1, 0, 9])))[3]).toBe(8);
      await settled();
    });

    it('checks RFC 1929 credentials', async () => {
      const proxy = await handing(() => socksRequest(true));
      const socket = await viaSocks(proxy, 'localhost', port, { userId: auth.username, password: auth.password });
      expect((await send(socket, Buffer.from('ok'))).toString()).toBe('ns\nok');
      await expect(viaSocks(proxy, 'localhost', port, { userId: auth.username, password: 'wrong' })).rejects.toThrow(/authentication failed/i);
      // A client offering only no-auth is told no method is acceptable.
      expect(await rawSocks(proxy, Buffer.from([5, 1, 0]))).toEqual(Buffer.from([5, 0xff]));
      await settled();
    });

    it('closes hostile clients one by one while a well-behaved one keeps working', async () => {
      const proxy = await handing(() => socksRequest());
      const methods = Array.from({ length: 255 }, (_, i) => i);
      const hostile = [
        rawSocks(proxy, Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])), // SOCKS4
        rawSocks(proxy, Buffer.from([5, 0])), // no methods
        rawSocks(proxy, Buffer.from('GET / HTTP/1.1\r\n\r\n')),
        rawSocks(proxy, Buffer.from([5, 2, 0]), { end: true }), // truncated greeting
        rawSocks(proxy, Buffer.from([5, 1, 0, 5, 1, 0, 3, 9, 0x61]), { end: true }), // truncated request
        rawSocks(proxy, Buffer.from([5, 1])), // stalls: cut off after the handshake timeout
        rawSocks(proxy, Buffer.concat([Buffer.from([5, 255, ...methods]), Buffer.alloc(64 << 10, 'A')])), // oversized
      ];
      const good = await viaSocks(proxy, '127.0.0.1', port);
      expect((await send(good, Buffer.from('still here'))).toString()).toBe('ns\nstill here');
      const answers = await Promise.all(hostile);
      // Nothing for any of them but the greeting answer the truncated request had earned.
      expect(answers.slice(0, 6)).toEqual([...Array.from({ length: 4 }, () => Buffer.alloc(0)), Buffer.from([5, 0]), Buffer.alloc(0)]);
      expect(answers[6]).toEqual(Buffer.from([5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0]));
      await settled();
    });

    it('serves a client that sends its handshake one byte at a time', async () => {
      const proxy = await handing(() => socksRequest());
      const socket = connect(proxy, '127.0.0.1');
      const received = collect(socket);
      for (const byte of Buffer.concat([Buffer.from([5, 1, 0]), connectRequest('localhost', port), Buffer.from('slow')])) {
        socket.write(Buffer.from([byte]));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      socket.end();
      const answer = await received;
      expect(answer.subarray(0, 2)).toEqual(Buffer.from([5, 0]));
      expect(answer.subarray(2, 4)).toEqual(Buffer.from([5, 0]));
      expect(answer.subarray(-7).toString()).toBe('ns\nslow');
      await settled();
    });

    it('ends every handed-over connection when the relay goes', { timeout: 15_000 }, async () => {
      const own = await newDialer('handoff-closing');
      const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
        own.handoff!(socket, { kind: 'forward', host: '127.0.0.1', port }, (end) => ownEnds.push(end));
      });
      const ownEnds: HandoffEnd[] = [];
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const client = connect((server.address() as { port: number }).port, '127.0.0.1');
      client.on('error', () => {});
      const closed = once(client, 'close');
      const [greeting] = (await once(client, 'data')) as [Buffer];
      expect(greeting.toString()).toBe('ns\n');
      await own.close();
      await closed;
      await until(() => ownEnds.length === 1);
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      expect(own.handoff!(socket, { kind: 'forward', host: '127.0.0.1', port }, () => {})).toBe(false);
      socket.destroy();
    });
  });

  describe('listening sockets handed over to the relay', () => {
    let dialer: NetnsDialer;
    let idleFds = 0;
    const open: HostListener[] = [];
    const resolved: string[] = [];
    const relayOf = (d: NetnsDialer): RelayHost => ({ serve: (l) => void d.listen!(l), unserve: (l) => d.unlisten!(l) });

    /** A host port that answers "here\n" itself until a relay takes it, as the agent's forwards do. */
    async function hostPort(request: HandoffRequest): Promise<{ listener: HostListener; port: number; servedHere: () => number }> {
      let here = 0;
      const listener = new HostListener(request, () =>
        createServer((socket) => {
          here++;
          socket.end('here\n');
        }),
      );
      open.push(listener);
      return { listener, port: await listener.listen({ host: '127.0.0.1', port: 0 }), servedHere: () => here };
    }

    const socksRequest = (auth?: { username: string; password: string }): HandoffRequest => ({
      kind: 'socks',
      envName: 'webapp',
      auth,
      resolve: async (name) => {
        resolved.push(name);
        if (name !== 'db.internal') throw new DialError('dns', `${name} is not known`);
        return ['10.66.0.9', '127.0.0.1'];
      },
    });

    beforeAll(async () => {
      dialer = await newDialer('listeners', { headerTimeoutMs: 500, connectTimeoutMs: 1_000 });
      idleFds = fds(dialer.relayPid!);
    });

    afterAll(async () => {
      await Promise.all(open.map((l) => l.close()));
    });

    it("serves a forward's port itself once it has the listening socket, and reports its figures", async () => {
      const { listener, port: forward, servedHere } = await hostPort({ kind: 'forward', host: '127.0.0.1', port });
      expect((await collect(connect(forward, '127.0.0.1'))).toString()).toBe('here\n');
      listener.offer(relayOf(dialer));
      await until(() => listener.servedByRelay);
      const data = randomBytes(2 << 20);
      const back = await send(connect(forward, '127.0.0.1'), data);
      expect(back.subarray(0, 3).toString()).toBe('ns\n');
      expect(sha(back.subarray(3))).toBe(sha(data));
      await until(() => listener.relayCounts().total === 1 && listener.relayCounts().active === 0);
      expect(listener.relayCounts()).toEqual({ active: 0, total: 1, in: data.length, out: data.length + 3 });
      // A connection that lasts is counted while it does.
      const live = connect(forward, '127.0.0.1');
      await once(live, 'data');
      await until(() => listener.relayCounts().active === 1);
      live.end();
      await until(() => listener.relayCounts().active === 0 && listener.relayCounts().total === 2);
      expect(servedHere()).toBe(1);
    });

    it('speaks SOCKS5 on a proxy port it took: addresses, the guest names, names the agent resolves, credentials', async () => {
      const plain = await hostPort(socksRequest());
      plain.listener.offer(relayOf(dialer));
      await until(() => plain.listener.servedByRelay);
      for (const host of ['127.0.0.1', '::1', 'localhost', 'api.webapp', 'db.internal']) {
        const socket = await viaSocks(plain.port, host, port);
        expect((await send(socket, Buffer.from('hi'))).toString()).toBe('ns\nhi');
      }
      expect(resolved).toEqual(['db.internal']);
      await expect(viaSocks(plain.port, 'unknown.internal', port)).rejects.toThrow(/HostUnreachable/);

      const auth = { username: 'dev', password: 'secret' };
      const guarded = await hostPort(socksRequest(auth));
      guarded.listener.offer(relayOf(dialer));
      await until(() => guarded.listener.servedByRelay);
      const socket = await viaSocks(guarded.port, 'localhost', port, { userId: auth.username, password: auth.password });
      expect((await send(socket, Buffer.from('ok'))).toString()).toBe('ns\nok');
      await expect(viaSocks(guarded.port, 'localhost', port, { userId: auth.username, password: 'wrong' })).rejects.toThrow(/authentication failed/i);
      expect(plain.servedHere() + guarded.servedHere()).toBe(0);
    });

    it('cuts the live connections of a port it stops serving, refuses new ones, and lets go of every thread and fd', async () => {
      const { listener, port: forward } = await hostPort({ kind: 'forward', host: '127.0.0.1', port });
      listener.offer(relayOf(dialer));
      await until(() => listener.servedByRelay);
      const live = connect(forward, '127.0.0.1');
      live.on('error', () => {});
      const [greeting] = (await once(live, 'data')) as [Buffer];
      expect(greeting.toString()).toBe('ns\n');
      const cut = once(live, 'close');
      await listener.close();
      await cut;
      const refused = connect(forward, '127.0.0.1');
      const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
      expect(err.code).toBe('ECONNREFUSED');
      await Promise.all(open.map((l) => l.close()));
      await until(() => fds(dialer.relayPid!) === idleFds && threads(dialer.relayPid!) <= PARKED_THREADS_MAX);
    });

    it('keeps the port when its relay goes, serves it here meanwhile, and gives it to the next relay', { timeout: 15_000 }, async () => {
      const first = await newDialer('listeners-first');
      const { listener, port: forward, servedHere } = await hostPort({ kind: 'forward', host: '127.0.0.1', port });
      listener.offer(relayOf(first));
      await until(() => listener.servedByRelay);
      const live = connect(forward, '127.0.0.1');
      live.on('error', () => {});
      await once(live, 'data');
      const ended = once(live, 'close');
      await first.close();
      await ended; // its connections went with it
      await until(() => !listener.servedByRelay);
      expect((await collect(connect(forward, '127.0.0.1'))).toString()).toBe('here\n');
      expect(servedHere()).toBe(1);

      const next = await newDialer('listeners-next');
      expect(next.listen!(listener)).toBe(true);
      await until(() => listener.servedByRelay);
      expect((await send(connect(forward, '127.0.0.1'), Buffer.from('again'))).toString()).toBe('ns\nagain');
      expect(listener.port).toBe(forward);
    });
  });

  describe('startNetnsDialer', () => {
    let dialer: NetnsDialer;
    let idleFds = 0;
    const exits: string[] = [];
    const settled = (): Promise<void> => until(() => fds(dialer.relayPid!) === idleFds && threads(dialer.relayPid!) <= PARKED_THREADS_MAX);

    beforeAll(async () => {
      dialer = await newDialer('main', { onExit: (reason) => exits.push(reason) });
      idleFds = fds(dialer.relayPid!);
    });

    afterAll(() => expect(exits).toEqual([]));

    it('reaches the guest loopbacks, not the host one', async () => {
      const host = connect(port, '127.0.0.1');
      expect((await collect(host)).toString()).toBe('host\n');
      for (const address of ['127.0.0.1', '::1', 'localhost', 'LOCALHOST', '[::1]']) {
        const stream = await dialer.dial({ host: address, port });
        expect((await send(stream, Buffer.from('x'))).toString()).toBe('ns\nx');
      }
    });

    it('rejects with the DialError kind the SOCKS reply needs', async () => {
      const refused = await dialError(dialer.dial({ host: '127.0.0.1', port: 1 }));
      expect([refused.kind, replyFor(refused)]).toEqual(['refused', Reply.connectionRefused]);
      expect((await dialError(dialer.dial({ host: '::1', port: 1 }))).kind).toBe('refused');
      expect((await dialError(dialer.dial({ host: '10.255.255.1', port: 80 }))).kind).toBe('network');
      expect((await dialError(dialer.dial({ host: '2001:db8::1', port: 80 }))).kind).toBe('network');
      const noRoute = await dialError(dialer.dial({ host: NO_ROUTE_HOST, port: 80 }));
      expect([noRoute.kind, replyFor(noRoute)]).toEqual(['unreachable', Reply.hostUnreachable]);
      expect((await dialError(dialer.dial({ host: 'db.internal', port: 80 }))).kind).toBe('dns');
      expect((await dialError(dialer.dial({ host: '127.0.0.1', port: 0 }))).kind).toBe('failure');
    });

    it('times out inside the guest, and stops at once when the signal aborts', async () => {
      const quick = await newDialer('quick', { connectTimeoutMs: 200 });
      expect((await dialError(quick.dial({ host: BLACKHOLE, port: 80 }))).kind).toBe('timeout');

      const attempt = new AbortController();
      const reason = new DialError('timeout', 'gave up');
      setTimeout(() => attempt.abort(reason), 100);
      const started = Date.now();
      expect(await dialError(dialer.dial({ host: BLACKHOLE, port: 80 }, attempt.signal))).toBe(reason);
      expect(Date.now() - started).toBeLessThan(2_000);
      await until(() => fds(dialer.relayPid!) === idleFds, 2_000);
      await quick.close();
    });

    it('passes half-close through both ways', async () => {
      const data = randomBytes(1 << 20);
      const sink = await dialer.dial({ host: '127.0.0.1', port: SINK_PORT });
      // The sink answers only after it sees our EOF, on a stream that is still open the other way.
      expect((await send(sink, data)).toString()).toBe(`${data.length} ${sha(data)}\n`);
    });

    it('carries 64 MiB both ways intact', async () => {
      const data = randomBytes(64 << 20);
      const stream = await dialer.dial({ host: '::1', port });
      const back = await send(stream, data);
      expect(back.length).toBe(data.length + 3);
      expect(sha(back.subarray(3))).toBe(sha(data));
    });

    it('serves 200 connections at once and frees every thread and fd after', async () => {
      await settled();
      const results = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const data = randomBytes(64 << 10);
          const stream = await dialer.dial({ host: i % 2 ? '127.0.0.1' : '::1', port });
          return (await send(stream, data)).subarray(3).equals(data);
        }),
      );
      expect(results.every(Boolean)).toBe(true);
      await settled();
    });

    it('relays UDP datagrams both ways', async () => {
      for (const host of ['127.0.0.1', '::1']) {
        const channel = await dialer.udp({ host, port: UDP_PORT });
        const messages: Buffer[] = [];
        channel.on('message', (msg) => messages.push(msg));
        const big = randomBytes(60_000);
        channel.send(Buffer.from('ping'));
        channel.send(Buffer.alloc(0));
        channel.send(big);
        await until(() => messages.length === 3);
        expect(messages.map((m) => m.subarray(0, 7).toString('latin1'))).toEqual(['ns:ping', 'ns:', `ns:${big.subarray(0, 4).toString('latin1')}`]);
        expect(messages[2]!.subarray(3).equals(big)).toBe(true);
        const closed = new Promise((resolve) => channel.on('close', () => resolve(undefined)));
        channel.close();
        await closed;
      }
      // Nobody listens: ICMP refusals are swallowed and the channel stays up.
      const silent = await dialer.udp({ host: '127.0.0.1', port: 1 });
      silent.send(Buffer.from('x'));
      silent.send(Buffer.from('y'));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const echo = await dialer.udp({ host: '127.0.0.1', port: UDP_PORT });
      const got = new Promise<Buffer>((resolve) => echo.on('message', resolve));
      echo.send(Buffer.from('still'));
      expect(String(await got)).toBe('ns:still');
      silent.close();
      echo.close();
      await settled();
    });

    it('stops the relay on close(): process gone, socket removed, no onExit', async () => {
      const onExit: string[] = [];
      const own = await newDialer('closing', { onExit: (reason) => onExit.push(reason) });
      const pid = own.relayPid!;
      const open = await own.dial({ host: '127.0.0.1', port });
      const ended = collect(open);
      await own.close();
      expect(alive(pid)).toBe(false);
      expect(existsSync(own.socketPath)).toBe(false);
      await ended; // open streams end with the relay
      expect((await dialError(own.dial({ host: '127.0.0.1', port }))).kind).toBe('failure');
      expect(onExit).toEqual([]);
    });

    it.each(['SIGTERM', 'SIGKILL'] as const)('tells onExit when the relay is killed (%s) and removes its socket', async (signal) => {
      const onExit: string[] = [];
      const own = await newDialer(`killed-${signal}`, { onExit: (reason) => onExit.push(reason) });
      const pid = own.relayPid!;
      process.kill(pid, signal);
      await until(() => onExit.length === 1);
      expect(onExit[0]).toMatch(signal === 'SIGKILL' ? /killed by SIGKILL/ : /^stopped by SIGTERM$/);
      expect(existsSync(own.socketPath)).toBe(false);
      expect(alive(pid)).toBe(false);
      expect((await dialError(own.dial({ host: '127.0.0.1', port }))).message).toMatch(/no relay/);
    });

    it('exits with the guest and says so', async () => {
      const sleeper = track(spawn('ip', ['netns', 'exec', ns, 'sleep', '600'], { stdio: 'ignore' }));
      await until(() => {
        try {
          return readlinkSync(`/proc/${sleeper.pid}/ns/net`) === readlinkSync(`/proc/${guestPid}/ns/net`);
        } catch {
          return false;
        }
      });
      const onExit: string[] = [];
      const own = await newDialer('guest-stops', { pid: sleeper.pid!, onExit: (reason) => onExit.push(reason) });
      const pid = own.relayPid!;
      expect((await send(await own.dial({ host: '127.0.0.1', port }), Buffer.alloc(0))).toString()).toBe('ns\n');
      sleeper.kill('SIGKILL');
      await until(() => onExit.length === 1);
      expect(onExit[0]).toBe(`process ${sleeper.pid} (the guest) exited`);
      expect(alive(pid)).toBe(false);
      expect(existsSync(own.socketPath)).toBe(false);
    });

    it('answers with a reason, not a throw, when the relay cannot start', async () => {
      const result = await startNetnsDialer({ pid: 2147483646, runDir: join(tmp, 'nopid') });
      expect(result.dialer).toBeUndefined();
      expect(result.reason).toMatch(/process 2147483646: No such process/);
    });
  });
});
