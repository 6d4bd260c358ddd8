import { SocksClient } from 'socks';
import { describe, expect, it, vi } from 'vitest';
import type { AgentStatus } from '../../../src/agent/agent.js';
import { requestControl } from '../../../src/agent/control.js';
import { readEvents } from '../../../src/agent/events.js';
import type { ForwardSpec } from '../../../src/agent/portfwd/spec.js';
import { startFakeGuest } from './fake-guest.js';
import { ask, echoServer, exchange, freePort, startTestAgent, udpEchoServer, udpExchange } from './helpers.js';

const forward = (hostPort: number, guestPort: number, extra: Partial<ForwardSpec> = {}): ForwardSpec => ({
  id: `static:${guestPort}`,
  kind: 'static',
  protocol: 'tcp',
  hostIp: '127.0.0.1',
  hostPort,
  guestIp: '127.0.0.1',
  guestPort,
  ...extra,
});

const status = (socket: string) => requestControl(socket, 'status') as Promise<AgentStatus>;

async function socks(port: number, host: string, guestPort: number, auth?: { userId: string; password: string }) {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port, type: 5, ...auth },
    command: 'connect',
    destination: { host, port: guestPort },
    timeout: 5_000,
  });
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.end(`hello ${host}`);
  });
}

describe('the control socket', () => {
  it('answers status from memory, with forwards, proxy and connection, and refuses what it does not know', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    const hostPort = await freePort();
    const { files, events } = await startTestAgent(guest, { forwards: [forward(hostPort, 8000)], proxy: { port: 0, pacPort: 0, fallback: true } });
    expect((await exchange(hostPort, 'ping')).reply).toBe('ping');

    const s = await status(files.socket);
    expect(s).toMatchObject({ pid: process.pid, env: 'webapp', configHash: 'test', connection: { state: 'connected', path: 'ssh', reconnects: 0 } });
    expect(s.forwards).toEqual([
      expect.objectContaining({ id: 'static:8000', kind: 'static', state: 'active', hostPort, guestPort: 8000, connections: 0, total: 1, bytesIn: 4, bytesOut: 4 }),
    ]);
    expect(s.proxy).toMatchObject({ address: `127.0.0.1:${s.proxy!.port}`, auth: null, pacUrl: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/proxy\.pac$/) });

    await expect(requestControl(files.socket, 'reboot')).rejects.toMatchObject({ code: 'UNKNOWN_METHOD' });
    expect(events.map((e) => e.type)).toEqual(['starting', 'forward-added', 'proxy-listening', 'connected', 'ready']);
    expect((await readEvents(files.events)).events).toEqual(events);
  });

  it('answers several requests on one connection, and survives garbage', async () => {
    const guest = await startFakeGuest();
    const { files } = await startTestAgent(guest);
    const net = await import('node:net');
    const socket = net.connect(files.socket);
    const lines: string[] = [];
    socket.setEncoding('utf8');
    let buffered = '';
    socket.on('data', (t: string) => {
      buffered += t;
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      lines.push(...parts);
    });
    socket.write('not json\n{"id":7,"method":"status"}\n{"id":8}\n');
    await vi.waitFor(() => expect(lines).toHaveLength(3), { timeout: 5_000 });
    socket.destroy();
    const replies = lines.map((l) => JSON.parse(l) as { id: unknown; ok: boolean; error?: { code: string } });
    expect(replies.map((r) => [r.id, r.ok, r.error?.code])).toEqual([
      [null, false, 'BAD_REQUEST'],
      [7, true, undefined],
      [8, false, 'BAD_REQUEST'],
    ]);
  });

  it('stops when asked, removing its socket, and says so in the events', async () => {
    const guest = await startFakeGuest();
    const { agent, files, events } = await startTestAgent(guest);
    expect(await requestControl(files.socket, 'stop')).toEqual({ stopping: true });
    expect(await agent.stopped).toMatch(/control socket/);
    expect(events.at(-1)).toMatchObject({ type: 'stopped' });
    await expect(requestControl(files.socket, 'status', {}, 500)).rejects.toMatchObject({ code: 'AGENT_UNREACHABLE' });
  });
});

describe('forwards over SSH', () => {
  it('reaches guest services bound to 127.0.0.1 and ::1 only', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    guest.services.set('::1:9000', { host: '::1', port: await echoServer('::1') });
    const [a, b] = [await freePort(), await freePort()];
    await startTestAgent(guest, { forwards: [forward(a, 8000), forward(b, 9000, { guestIp: '::1' })] });
    expect((await exchange(a, 'four')).reply).toBe('four');
    expect((await exchange(b, 'six')).reply).toBe('six');
    expect(guest.dialed).toEqual([
      { host: '127.0.0.1', port: 8000 },
      { host: '::1', port: 9000 },
    ]);
  });

  it('closes a host connection at once when nothing listens in the guest', async () => {
    const guest = await startFakeGuest();
    const port = await freePort();
    await startTestAgent(guest, { forwards: [forward(port, 8000)] });
    const result = await exchange(port, 'anyone?');
    expect(result.reply).toBe('');
    expect(result.ms).toBeLessThan(3_000); // a hang would last the 5 s socket timeout
  });

  it('reports a host port that is taken, and keeps the other forwards', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    const taken = await echoServer();
    const free = await freePort();
    const { events, files } = await startTestAgent(guest, { forwards: [forward(taken, 5432), forward(free, 8000)] });
    const ready = events.find((e) => e.type === 'ready')!;
    expect(ready.warnings).toEqual([`host 127.0.0.1:${taken} → guest 127.0.0.1:5432 (tcp): host port ${taken} is taken by another program (127.0.0.1:${taken})`]);
    expect((await status(files.socket)).forwards.map((f) => f.state)).toEqual(['failed', 'active']);
    expect((await exchange(free, 'ok')).reply).toBe('ok');
  });

  it('reports UDP forwards as impossible without the network-namespace path', async () => {
    const guest = await startFakeGuest();
    const { events } = await startTestAgent(guest, { forwards: [forward(await freePort(), 5353, { protocol: 'udp' })] });
    expect(events.find((e) => e.type === 'forward-failed')?.message).toMatch(/UDP cannot be forwarded over SSH/);
  });
});

describe('reverse forwards', () => {
  it("let the guest's localhost reach a host service, and say when the guest port is taken", async () => {
    const guest = await startFakeGuest();
    const hostService = await echoServer();
    guest.refuseReverse.add(7000);
    const reverse = (guestPort: number): ForwardSpec => ({ ...forward(hostService, guestPort), id: `reverse:${guestPort}`, kind: 'reverse' });
    const { files, events } = await startTestAgent(guest, { forwards: [reverse(6379), reverse(7000)] });
    expect(await ask(guest.reverse.get(6379)!, 'from the guest')).toBe('from the guest');
    const s = await status(files.socket);
    expect(s.forwards.map((f) => [f.id, f.state, f.total])).toEqual([
      ['reverse:6379', 'active', 1],
      ['reverse:7000', 'failed', 0],
    ]);
    expect(events.find((e) => e.type === 'forward-failed')?.message).toMatch(/refused to listen on port 7000/);
  });
});

describe('auto-detected ports', () => {
  it('forwards what the guest starts listening on and removes it when it stops', async () => {
    const guest = await startFakeGuest();
    const port = await freePort();
    guest.services.set(`127.0.0.1:${port}`, { host: '127.0.0.1', port: await echoServer() });
    const staticPort = await freePort();
    const { event, files } = await startTestAgent(guest, {
      forwards: [forward(staticPort, 8000)],
      autoPorts: { enabled: true, ignore: [], only: [] },
    });
    // sshd and the static forward's guest port are never auto-forwarded.
    guest.listening.add('0.0.0.0:22');
    guest.listening.add('127.0.0.1:8000');
    guest.listening.add(`127.0.0.1:${port}`);
    await event((e) => e.type === 'forward-added' && (e.forward as ForwardSpec).id === `auto:${port}`);
    expect((await exchange(port, 'auto')).reply).toBe('auto');
    expect((await status(files.socket)).forwards.map((f) => f.id)).toEqual(['static:8000', `auto:${port}`]);

    guest.listening.delete(`127.0.0.1:${port}`);
    await event((e) => e.type === 'forward-removed');
    expect((await exchange(port, 'gone')).error).toBe('ECONNREFUSED');
  });

  it('says so when the host port is taken, and honours ignore and only', async () => {
    const guest = await startFakeGuest();
    const taken = await echoServer();
    const ignored = await freePort();
    const { event, files } = await startTestAgent(guest, {
      autoPorts: { enabled: true, ignore: [{ from: ignored, to: ignored }], only: [] },
    });
    guest.listening.add(`:::${taken}`);
    guest.listening.add(`127.0.0.1:${ignored}`);
    const failed = await event((e) => e.type === 'forward-failed');
    expect(failed.message).toContain(`host port ${taken} is taken`);
    const s = await status(files.socket);
    expect(s.forwards).toEqual([expect.objectContaining({ id: `auto:${taken}`, state: 'failed', guestIp: '127.0.0.1' })]);
  });
});

describe('the SOCKS5 proxy over SSH', () => {
  it("sends the env's name and localhost to the guest's loopback and other names to the guest's resolver", async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    guest.services.set('::1:8001', { host: '::1', port: await echoServer('::1') });
    guest.services.set('10.9.9.9:5432', { host: '127.0.0.1', port: await echoServer() });
    guest.names.set('db.internal', ['10.9.9.9']);
    const { agent } = await startTestAgent(guest, { proxy: { port: 0, pacPort: 0, fallback: true } });
    const port = agent.status().proxy!.port;
    expect(await socks(port, 'webapp', 8000)).toBe('hello webapp');
    expect(await socks(port, 'api.webapp', 8000)).toBe('hello api.webapp');
    expect(await socks(port, 'localhost', 8001)).toBe('hello localhost');
    expect(await socks(port, 'db.internal', 5432)).toBe('hello db.internal');
    expect(await socks(port, '127.0.0.1', 8000)).toBe('hello 127.0.0.1');
    await expect(socks(port, 'nowhere.internal', 80)).rejects.toThrow();
    // Over SSH, sshd resolves names itself; loopback names try IPv4, then IPv6.
    expect(guest.dialed).toEqual([
      { host: '127.0.0.1', port: 8000 },
      { host: '127.0.0.1', port: 8000 },
      { host: '127.0.0.1', port: 8001 },
      { host: '::1', port: 8001 },
      { host: 'db.internal', port: 5432 },
      { host: '127.0.0.1', port: 8000 },
      { host: 'nowhere.internal', port: 80 },
    ]);
  });

  it('asks for the credentials it was given and serves a PAC file for the guest', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    const auth = { username: 'envbox', password: 's3cret-pass' };
    const { agent } = await startTestAgent(guest, { proxy: { port: 0, pacPort: 0, fallback: true, auth } });
    const proxy = agent.status().proxy!;
    expect(proxy.auth).toEqual(auth);
    await expect(socks(proxy.port, 'webapp', 8000)).rejects.toThrow();
    expect(await socks(proxy.port, 'webapp', 8000, { userId: 'envbox', password: 's3cret-pass' })).toBe('hello webapp');
    const pac = await (await fetch(proxy.pacUrl)).text();
    expect(pac).toContain(`"SOCKS5 127.0.0.1:${proxy.port}; SOCKS 127.0.0.1:${proxy.port}"`);
    expect(pac).toContain('["webapp","webapp.localhost"]');
  });

  it('keeps a taken port only when allowed to move', async () => {
    const guest = await startFakeGuest();
    const taken = await echoServer();
    const moved = await startTestAgent(guest, { proxy: { port: taken, pacPort: 0, fallback: true } });
    expect(moved.agent.status().proxy!.port).not.toBe(taken);
    const fixed = await startTestAgent(guest, { proxy: { port: taken, pacPort: 0, fallback: false } });
    expect(fixed.agent.status().proxy).toBeNull();
    expect(fixed.events.find((e) => e.type === 'ready')?.warnings).toEqual([expect.stringContaining(`cannot listen on 127.0.0.1:${taken}`)]);
  });
});

describe('the network-namespace path', () => {
  it('dials through the relay, resolving names in the guest, and carries UDP', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    guest.services.set('10.9.9.9:5432', { host: '127.0.0.1', port: await echoServer() });
    guest.udpServices.set('127.0.0.1:5353', { host: '127.0.0.1', port: await udpEchoServer() });
    guest.names.set('db.internal', ['10.9.9.9']);
    const [tcpPort, udpPort] = [await freePort(), await freePort()];
    const { agent } = await startTestAgent(guest, {
      netns: true,
      forwards: [forward(tcpPort, 8000), forward(udpPort, 5353, { protocol: 'udp', id: 'static:udp' })],
      proxy: { port: 0, pacPort: 0, fallback: true },
    });
    const s = agent.status();
    expect(s.connection).toMatchObject({ path: 'netns', netnsPid: process.pid });
    expect((await exchange(tcpPort, 'fast')).reply).toBe('fast');
    expect(await udpExchange(udpPort, 'dns?')).toBe('echo:dns?');
    expect(await socks(s.proxy!.port, 'db.internal', 5432)).toBe('hello db.internal');
    expect(await socks(s.proxy!.port, 'webapp', 8000)).toBe('hello webapp');
    // Nothing went over SSH: the relay dialed, getent ran in the guest.
    expect(guest.dialed).toEqual([]);
    expect(agent.status().forwards.find((f) => f.protocol === 'udp')).toMatchObject({ state: 'active', total: 1, bytesIn: 4, bytesOut: 9 });
  });
});

describe('starting on the relay alone', () => {
  it('is ready before sshd answers when nothing needs SSH, and logs in behind it', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    guest.services.set('10.9.9.9:5432', { host: '127.0.0.1', port: await echoServer() });
    guest.names.set('db.internal', ['10.9.9.9']);
    await guest.stop(); // the guest runs, its sshd does not yet
    const port = await freePort();
    const { agent, events } = await startTestAgent(guest, {
      netns: true,
      relayFirst: true,
      forwards: [forward(port, 8000)],
      proxy: { port: 0, pacPort: 0, fallback: true },
    });
    const s = agent.status();
    expect(s.connection).toMatchObject({ state: 'connected', path: 'netns' });
    expect(s.forwards[0]).toMatchObject({ state: 'active' });
    expect(guest.logins).toBe(0);
    expect((await exchange(port, 'early')).reply).toBe('early');
    // A name is resolved the guest's way, over SSH: the lookup waits for the login instead of failing.
    const named = socks(s.proxy!.port, 'db.internal', 5432);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await guest.start();
    expect(await named).toBe('hello db.internal');
    expect(guest.logins).toBe(1);
    expect(events.filter((e) => e.type === 'connected')).toHaveLength(1);
  });

  it('logs in a moment later by itself when nothing asks for SSH', async () => {
    const guest = await startFakeGuest();
    const { agent, events } = await startTestAgent(guest, { netns: true, relayFirst: true });
    expect(guest.logins).toBe(0);
    await vi.waitFor(() => expect(guest.logins).toBe(1), { timeout: 5_000 });
    expect(agent.status().connection).toMatchObject({ state: 'connected', path: 'netns', reconnects: 0 });
    expect(events.filter((e) => e.type === 'connected')).toHaveLength(1);
  });

  it('keeps serving on the relay when the first login fails, and reconnects', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    await guest.stop();
    const port = await freePort();
    const { agent, events, event } = await startTestAgent(guest, { netns: true, relayFirst: true, connectTimeoutMs: 200, attemptMs: 200, forwards: [forward(port, 8000)] });
    await event((e) => e.type === 'disconnected');
    expect(agent.status().connection.state).toBe('reconnecting');
    await guest.start();
    await vi.waitFor(() => expect(events.filter((e) => e.type === 'connected')).toHaveLength(2), { timeout: 5_000 });
    expect(agent.status().connection).toMatchObject({ state: 'connected', path: 'netns' });
    expect((await exchange(port, 'later')).reply).toBe('later');
    expect(guest.logins).toBe(1);
  });

  it('waits for SSH before it is ready when a reverse forward needs it', async () => {
    const guest = await startFakeGuest();
    await guest.stop();
    const hostService = await echoServer();
    await expect(
      startTestAgent(guest, {
        netns: true,
        relayFirst: true,
        connectTimeoutMs: 300,
        forwards: [{ ...forward(hostService, 6379), id: 'reverse:0', kind: 'reverse' }],
      }),
    ).rejects.toMatchObject({ code: 'SSH_TIMEOUT' });
  });
});

describe('reconnecting', () => {
  it('restores forwards and reverse forwards after the connection drops', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    const hostService = await echoServer();
    const port = await freePort();
    const { event, events, files } = await startTestAgent(guest, {
      forwards: [forward(port, 8000), { ...forward(hostService, 6379), id: 'reverse:0', kind: 'reverse' }],
    });
    const firstReverse = guest.reverse.get(6379);
    guest.dropAll();
    await event((e) => e.type === 'disconnected');
    await vi.waitFor(() => expect(events.filter((e) => e.type === 'connected')).toHaveLength(2));
    await vi.waitFor(() => expect(guest.reverse.get(6379)).not.toBe(firstReverse));
    expect((await exchange(port, 'again')).reply).toBe('again');
    expect(await ask(guest.reverse.get(6379)!, 'back')).toBe('back');
    expect((await status(files.socket)).connection).toMatchObject({ state: 'connected', reconnects: 1 });
  });

  it('answers status at once while the guest is down, fails new connections fast, and recovers', async () => {
    const guest = await startFakeGuest();
    guest.services.set('127.0.0.1:8000', { host: '127.0.0.1', port: await echoServer() });
    const port = await freePort();
    const { event, events, files } = await startTestAgent(guest, { forwards: [forward(port, 8000)], proxy: { port: 0, pacPort: 0, fallback: true } });
    await guest.stop();
    await event((e) => e.type === 'reconnecting');
    const asked = Date.now();
    const s = await status(files.socket);
    expect(Date.now() - asked).toBeLessThan(3_000); // not held up by the reconnect attempts
    expect(s.connection.state).toBe('reconnecting');
    expect(s.forwards[0]!.state).toBe('waiting');
    const during = await exchange(port, 'hello?');
    expect(during.reply).toBe('');
    expect(during.ms).toBeLessThan(3_000);
    await expect(socks(s.proxy!.port, 'webapp', 8000)).rejects.toThrow();

    await guest.start();
    await vi.waitFor(() => expect(events.filter((e) => e.type === 'connected')).toHaveLength(2), { timeout: 5_000 });
    expect((await exchange(port, 'back')).reply).toBe('back');
    expect(await socks(s.proxy!.port, 'webapp', 8000)).toBe('hello webapp');
  });

  it('stops when the guest stays stopped', async () => {
    const guest = await startFakeGuest();
    const { agent } = await startTestAgent(guest, { guestState: async () => 'stopped', goneAfterMs: 200, attemptMs: 100 });
    await guest.stop();
    expect(await agent.stopped).toMatch(/the guest is stopped/);
  });
});

describe('starting', () => {
  it('fails with a failed event and leaves nothing listening when the guest cannot be reached', async () => {
    const guest = await startFakeGuest();
    await guest.stop();
    const port = await freePort();
    await expect(startTestAgent(guest, { forwards: [forward(port, 8000)], connectTimeoutMs: 300 })).rejects.toMatchObject({ code: 'SSH_TIMEOUT' });
    expect((await exchange(port, 'x')).error).toBe('ECONNREFUSED');
  });
});
