import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { SocksClient } from 'socks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pidAlive } from '../../../src/util/lock.js';
import {
  eventually,
  freePort,
  guestEcho,
  guestEchoOnce,
  guestHttp,
  guestUdpEcho,
  httpGet,
  runTracked,
  scratch,
  socksGet,
  stopInGuest,
  type Project,
  type Scratch,
} from './project.js';

// One real LXC guest carries every kind of forward and the proxy, then survives a reboot and a
// killed agent. Run after `npm run build`; needs root, LXC and the debian/bookworm image.

interface Forward {
  id: string;
  kind: string;
  hostPort: number;
  guestPort: number;
  state: string;
  connections: number;
  total: number;
}

const BODY = '<html><body><h1>hello from agent-fwd</h1></body></html>';
const BODY6 = 'only on ::1';

let s: Scratch;
let p: Project;
let hostService: http.Server;
const ports = { tcp: 0, v6: 0, udp: 0, reverse: 0 };

const forwards = async () => (await p.json<{ forwards: Forward[] }>(['ports'])).forwards;
const proxyPort = async () => (await p.json<{ proxy: { port: number } }>(['proxy'])).proxy.port;
const agentPid = async () => (await p.json<{ agent: { pid: number } | null }>(['ports'])).agent?.pid;

function udpExchange(port: number, payload: string): Promise<string | undefined> {
  const socket = dgram.createSocket('udp4');
  return new Promise<string | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 2_000);
    socket.on('message', (msg) => {
      clearTimeout(timer);
      resolve(msg.toString());
    });
    socket.send(payload, port, '127.0.0.1');
  }).finally(() => socket.close());
}

beforeAll(async () => {
  s = await scratch();
  for (const key of Object.keys(ports) as (keyof typeof ports)[]) ports[key] = await freePort();
  hostService = http.createServer((_req, res) => res.end('served by the host'));
  await new Promise<void>((resolve) => hostService.listen(ports.reverse, '127.0.0.1', resolve));
  p = await s.project(
    'fwd',
    `name: agent-fwd
network: { outbound: false }
ports:
  - { guest: 8000, host: ${ports.tcp} }
  - { guest: 9000, host: ${ports.v6}, guest_ip: "::1" }
  - { guest: 5353, host: ${ports.udp}, protocol: udp }
  - { guest: 6379, host: ${ports.reverse}, reverse: true }
auto_ports: true
proxy: { socks: auto }
`,
  );
  const up = await p.env(['up']);
  expect(up.code, up.stderr).toBe(0);
  await guestHttp(p, '127.0.0.1', 8000, BODY);
  await guestHttp(p, '::1', 9000, BODY6);
  await guestUdpEcho(p, '127.0.0.1', 5353);
});

afterAll(async () => {
  hostService?.close();
  await s?.cleanup();
});

describe('env up starts the agent', () => {
  it('lists every forward as active and logs ready', async () => {
    expect((await forwards()).map((f) => [f.id, f.kind, f.hostPort, f.guestPort, f.state])).toEqual([
      ['static:0', 'static', ports.tcp, 8000, 'active'],
      ['static:1', 'static', ports.v6, 9000, 'active'],
      ['static:2', 'static', ports.udp, 5353, 'active'],
      ['reverse:3', 'reverse', ports.reverse, 6379, 'active'],
    ]);
    const { events } = await p.json<{ events: { type: string }[] }>(['logs']);
    expect(events.map((e) => e.type)).toContain('ready');
    const text = await p.env(['logs']);
    expect(text.stdout).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} {2}starting/m);
  });
});

describe('static forwards', () => {
  it("reach a service bound only to the guest's 127.0.0.1", async () => {
    await eventually(async () => expect(await httpGet(ports.tcp)).toBe(BODY), 10_000);
  });

  it("reach a service bound only to the guest's ::1", async () => {
    await eventually(async () => expect(await httpGet(ports.v6)).toBe(BODY6), 10_000);
  });

  it('carry UDP', async () => {
    await eventually(async () => expect(await udpExchange(ports.udp, 'ping')).toBe('echo:ping'), 10_000);
  });
});

describe('reverse forwards', () => {
  it("let the guest's localhost reach a host service", async () => {
    const r = await p.env(['ssh', '--', 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:6379/']);
    expect(r).toMatchObject({ code: 0, stdout: 'served by the host' });
  });
});

describe('auto-detected ports', () => {
  it('appear when the guest starts listening and go when it stops', async () => {
    const port = await freePort();
    await guestHttp(p, '127.0.0.1', port, 'auto-detected');
    await eventually(async () => expect(await httpGet(port)).toBe('auto-detected'), 10_000);
    expect((await forwards()).find((f) => f.id === `auto:${port}`)).toMatchObject({ kind: 'auto', hostPort: port, state: 'active' });
    await stopInGuest(p, port);
    await eventually(async () => expect((await forwards()).some((f) => f.id === `auto:${port}`)).toBe(false), 10_000);
    expect(await httpGet(port)).toBeUndefined();
    const { events } = await p.json<{ events: { type: string; message: string }[] }>(['logs']);
    expect(events.filter((e) => e.message.includes(`:${port}`)).map((e) => e.type)).toEqual(['port-detected', 'forward-added', 'forward-removed']);
  });
});

describe('connections the relay serves', () => {
  const agentPath = async () => (await p.json<{ agent: { connection: { path: string } } }>(['ports'])).agent.connection.path;
  const echoed = async (socket: net.Socket, text: string) => {
    socket.write(text);
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    return chunk.toString();
  };

  it('are counted in env ports and env proxy while they last', async () => {
    expect(await agentPath()).toBe('netns');
    const port = await freePort();
    await guestEcho(p, '127.0.0.1', port);
    const proxy = async () => (await p.json<{ proxy: { connections: number; total: number } }>(['proxy'])).proxy;
    const before = await proxy();
    const socket = await eventually(async () => {
      const { socket } = await SocksClient.createConnection({
        proxy: { host: '127.0.0.1', port: await proxyPort(), type: 5 },
        command: 'connect',
        destination: { host: 'localhost', port },
        timeout: 5_000,
      });
      return socket;
    }, 10_000);
    try {
      expect(await echoed(socket, 'counted')).toBe('counted');
      await eventually(async () => expect(await proxy()).toMatchObject({ connections: before.connections + 1, total: expect.any(Number) }), 10_000);
      expect((await proxy()).total).toBeGreaterThan(before.total);
    } finally {
      socket.destroy();
      await stopInGuest(p, port);
    }
    await eventually(async () => expect((await proxy()).connections).toBe(before.connections), 10_000);

    // A forward's: the guest's HTTP server waits for a request that never comes.
    const staticForward = async () => (await forwards()).find((f) => f.id === 'static:0')!;
    const { total } = await staticForward();
    const held = net.connect(ports.tcp, '127.0.0.1');
    held.on('error', () => {});
    try {
      await eventually(async () => expect(await staticForward()).toMatchObject({ connections: 1, total: total + 1 }), 10_000);
    } finally {
      held.destroy();
    }
    await eventually(async () => expect((await staticForward()).connections).toBe(0), 10_000);
  });

  it('of a forward that goes are cut with it', async () => {
    const port = await freePort();
    await guestEchoOnce(p, '127.0.0.1', port);
    const forward = async () => (await forwards()).find((f) => f.id === `auto:${port}`);
    await eventually(async () => expect((await forward())?.state).toBe('active'), 10_000);
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    const closed = once(socket, 'close');
    try {
      // The guest stops listening once it has answered this: the forward goes, the connection would stay.
      expect(await echoed(socket, 'first')).toBe('first');
      await eventually(async () => expect(await forward()).toBeUndefined(), 10_000);
      await closed;
    } finally {
      socket.destroy();
      await stopInGuest(p, port);
    }
  });
});

describe('the SOCKS5 proxy', () => {
  it("reaches guest-localhost services by the env's name and by localhost, with the socks client", async () => {
    const port = await proxyPort();
    expect(await socksGet(port, 'agent-fwd', 8000)).toBe(BODY);
    expect(await socksGet(port, 'localhost', 9000)).toBe(BODY6);
    expect(await socksGet(port, '127.0.0.1', 8000)).toBe(BODY);
  });

  it('works for curl --socks5-hostname', async () => {
    const r = await runTracked(s, 'curl', ['-sS', '--max-time', '10', '--socks5-hostname', `127.0.0.1:${await proxyPort()}`, 'http://agent-fwd:8000/'], 20_000);
    expect(r).toMatchObject({ code: 0, stdout: BODY });
  });

  it('works for headless Chromium', async () => {
    const profile = await mkdtemp(join(s.dir, 'chromium-'));
    const r = await runTracked(
      s,
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${profile}`,
        `--proxy-server=socks5://127.0.0.1:${await proxyPort()}`,
        '--dump-dom',
        'http://agent-fwd:8000/',
      ],
      90_000,
    );
    expect(r.stdout, r.stderr.slice(-2000)).toContain('<h1>hello from agent-fwd</h1>');
  });

  it('keeps a good client going while hostile clients send garbage, SOCKS4, stalls and a flood', async () => {
    const port = await proxyPort();
    await guestEcho(p, '127.0.0.1', 7000);
    const connect = async () =>
      (
        await SocksClient.createConnection({
          proxy: { host: '127.0.0.1', port, type: 5 },
          command: 'connect',
          destination: { host: 'agent-fwd', port: 7000 },
          timeout: 10_000,
        })
      ).socket;
    await eventually(async () => {
      const socket = await connect();
      const echoed = await new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())).write('up?'));
      socket.destroy();
      expect(echoed).toBe('up?');
    }, 10_000);
    const payload = randomBytes(32 << 20);
    const good = (async () => {
      const socket = await connect();
      const hash = createHash('sha256');
      let received = 0;
      await new Promise<void>((resolve, reject) => {
        socket.on('data', (d: Buffer) => {
          hash.update(d);
          received += d.length;
          if (received === payload.length) resolve();
        });
        socket.on('error', reject);
        socket.write(payload);
      });
      socket.destroy();
      return hash.digest('hex');
    })();
    const hostile: net.Socket[] = [];
    const open = (bytes?: Buffer) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.on('error', () => {});
      if (bytes) socket.on('connect', () => socket.write(bytes));
      hostile.push(socket);
    };
    for (let i = 0; i < 50; i++) open(randomBytes(64));
    for (let i = 0; i < 20; i++) open(Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])); // SOCKS4
    for (let i = 0; i < 20; i++) open(Buffer.from([5, 200])); // a greeting that never completes
    for (let i = 0; i < 300; i++) open();
    // The control socket still answers within the CLI's short timeout (else `agent` would be null).
    expect(await agentPid()).toBeDefined();
    expect(await good).toBe(createHash('sha256').update(payload).digest('hex'));
    hostile.forEach((h) => h.destroy());
    expect(await socksGet(port, 'agent-fwd', 8000)).toBe(BODY);
  });
});

describe('resilience', () => {
  it('restores every forward and the proxy after the guest reboots, without the user doing anything', async () => {
    const pid = await agentPid();
    // When the guest's init started: `sudo reboot` returns before the guest has gone down, and a command
    // run in that moment would land in the old boot and die with it.
    const initStarted = async () => {
      const r = await p.env(['ssh', '--', 'cut', '-d', ' ', '-f', '22', '/proc/1/stat']);
      return r.code === 0 ? r.stdout.trim() : undefined;
    };
    const before = await initStarted();
    expect(before).toMatch(/^\d+$/);
    await p.env(['ssh', '--', 'sudo', 'reboot']);
    // The guest's own services died with it; once it is back they are started again, as a user would.
    await eventually(async () => {
      const now = await initStarted();
      expect(now).toMatch(/^\d+$/);
      expect(now).not.toBe(before);
    }, 90_000);
    await guestHttp(p, '127.0.0.1', 8000, BODY);
    await eventually(async () => expect(await httpGet(ports.tcp)).toBe(BODY), 30_000);
    await eventually(async () => {
      const now = await forwards();
      expect(now.every((f) => f.state === 'active'), JSON.stringify(now)).toBe(true);
    }, 30_000);
    expect(await socksGet(await proxyPort(), 'agent-fwd', 8000)).toBe(BODY);
    expect((await p.env(['ssh', '--', 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:6379/'])).stdout).toBe('served by the host');
    expect(await agentPid()).toBe(pid);
    const types = (await p.json<{ events: { type: string }[] }>(['logs'])).events.map((e) => e.type);
    expect(types.slice(types.lastIndexOf('disconnected'))).toContain('connected');
  });

  it('is restarted by env status after it was killed, keeping its proxy port', async () => {
    const pid = (await agentPid())!;
    const port = await proxyPort();
    process.kill(pid, 'SIGKILL');
    const status = await p.env(['status']);
    expect(status.code, status.stderr).toBe(0);
    const again = await agentPid();
    expect(again).toBeDefined();
    expect(again).not.toBe(pid);
    expect(await proxyPort()).toBe(port);
    expect(await httpGet(ports.tcp)).toBe(BODY);
  });

  it('never holds up the CLI while the guest is frozen, and carries on after resume', async () => {
    expect((await p.env(['suspend'])).code).toBe(0);
    try {
      const started = Date.now();
      const listed = await p.env(['ports']);
      expect(listed.code, listed.stderr).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000); // a hang would be the agent waiting on its guest
    } finally {
      expect((await p.env(['resume'])).code).toBe(0);
    }
    await eventually(async () => expect(await httpGet(ports.tcp)).toBe(BODY), 30_000);
  });

  it('stops with env halt', async () => {
    const pid = (await agentPid())!;
    const halt = await p.env(['halt']);
    expect(halt.code, halt.stderr).toBe(0);
    // Gone, or exited and waiting for an init that reaps orphans only now and then.
    expect(pidAlive(pid)).toBe(false);
    expect(await httpGet(ports.tcp)).toBeUndefined();
  });
});
