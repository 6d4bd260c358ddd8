import dgram from 'node:dgram';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { SocketEntry } from '../../../src/agent/procnet.js';
import type { Env } from '../../../src/core/env.js';
import { checkPortCollisions, currentPlan, planForwards } from '../../../src/core/ports.js';
import { envDir } from '../../../src/core/state.js';
import type { EnvConfig, PortForward } from '../../../src/envfile/defaults.js';
import { EnvboxError } from '../../../src/util/errors.js';

const port = (guest: number, extra: Partial<PortForward> = {}): PortForward => ({
  host: guest,
  guest,
  hostIp: '127.0.0.1',
  guestIp: '127.0.0.1',
  protocol: 'tcp',
  autoCorrect: false,
  reverse: false,
  ...extra,
});
const held = (p: number, ip = '127.0.0.1', protocol: 'tcp' | 'udp' = 'tcp'): SocketEntry => ({ protocol, ip, port: p, state: 0x0a, uid: 0, inode: p });

describe('planForwards', () => {
  it('keeps every asked-for port that is free, and plans reverse forwards as they are', () => {
    const plan = planForwards([port(8000), port(5432, { host: 5433 }), port(6379, { reverse: true, host: 16379 }), port(5353, { protocol: 'udp' })], [held(5432)]);
    expect(plan.collisions).toEqual([]);
    expect(plan.corrections).toEqual([]);
    expect(plan.forwards.map((f) => [f.id, f.kind, f.protocol, f.hostPort, f.guestPort])).toEqual([
      ['static:0', 'static', 'tcp', 8000, 8000],
      ['static:1', 'static', 'tcp', 5433, 5432],
      ['reverse:2', 'reverse', 'tcp', 16379, 6379],
      ['static:3', 'static', 'udp', 5353, 5353],
    ]);
  });

  it.each([
    ['the same address', held(8000), true],
    ['the wildcard', held(8000, '0.0.0.0'), true],
    ['the IPv6 wildcard (dual-stack)', held(8000, '::'), true],
    ['another loopback address', held(8000, '127.0.0.2'), false],
    ['IPv6 loopback', held(8000, '::1'), false],
    ['UDP on the same port', held(8000, '127.0.0.1', 'udp'), false],
  ])('a listener on %s collides: %s', (_, socket, collides) => {
    expect(planForwards([port(8000)], [socket]).collisions.length).toBe(collides ? 1 : 0);
  });

  it('reports a taken port with the socket in the way, unless auto_correct moves it to the next free one', () => {
    const taken = [held(3000), held(3001), held(8000)];
    const plan = planForwards([port(8000), port(3000, { autoCorrect: true })], taken);
    expect(plan.collisions).toEqual([{ index: 0, protocol: 'tcp', ip: '127.0.0.1', port: 8000, held: held(8000) }]);
    expect(plan.corrections).toEqual([{ index: 1, protocol: 'tcp', ip: '127.0.0.1', port: 3000, held: held(3000), to: 3002 }]);
    expect(plan.forwards[1]).toMatchObject({ hostPort: 3002, requestedHostPort: 3000, guestPort: 3000 });
  });

  it('never moves a forward onto a port another forward asks for or already got', () => {
    const plan = planForwards([port(3000, { autoCorrect: true }), port(3001), port(3002, { autoCorrect: true })], [held(3000), held(3002)]);
    expect(plan.forwards.map((f) => f.hostPort)).toEqual([3003, 3001, 3004]);
  });

  it('keeps the port an earlier plan chose while it is free, so a corrected URL stays the same', () => {
    const first = planForwards([port(3000, { autoCorrect: true })], [held(3000)]);
    const again = planForwards([port(3000, { autoCorrect: true })], [held(3000), held(3001)], [{ ...first.forwards[0]!, hostPort: 3005 }]);
    expect(again.forwards[0]!.hostPort).toBe(3005);
    const freed = planForwards([port(3000, { autoCorrect: true })], [], [{ ...first.forwards[0]!, hostPort: 3005 }]);
    expect(freed.forwards[0]!.hostPort).toBe(3000);
  });

  it('wraps round to 1024 and gives up only when no port is left', () => {
    const plan = planForwards([port(65535, { autoCorrect: true })], [held(65535)]);
    expect(plan.forwards[0]!.hostPort).toBe(1024);
    const everything = Array.from({ length: 65535 }, (_, i) => held(i + 1));
    const full = planForwards([port(8000, { autoCorrect: true })], everything);
    expect(full.collisions).toEqual([{ index: 0, protocol: 'tcp', ip: '127.0.0.1', port: 8000, held: undefined }]);
  });
});

describe('checkPortCollisions against the real host', () => {
  let state: string;
  const saved = process.env.XDG_STATE_HOME;

  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), 'envbox-ports-'));
    process.env.XDG_STATE_HOME = state;
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.XDG_STATE_HOME;
    else process.env.XDG_STATE_HOME = saved;
    await rm(state, { recursive: true, force: true });
  });

  const fakeEnv = (ports: PortForward[], proxy: EnvConfig['proxy'] = { socks: 'auto', auth: false }): Env => {
    const id = `ports-${Math.random().toString(16).slice(2, 10)}`;
    return { id, dir: envDir(id), record: undefined, provider: {} as Env['provider'], config: { name: 'ports', ports, proxy } as EnvConfig };
  };

  async function listener(): Promise<number> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return (server.address() as net.AddressInfo).port;
  }

  it('names the port and this process as its holder', async () => {
    const taken = await listener();
    const err = (await checkPortCollisions(fakeEnv([port(taken)])).catch((e: unknown) => e)) as EnvboxError;
    expect(err).toBeInstanceOf(EnvboxError);
    expect(err.code).toBe('PORT_IN_USE');
    expect(err.message).toContain(`host port ${taken} (tcp, ports[0]) is in use by `);
    expect(err.message).toContain(`(pid ${process.pid}, listening on 127.0.0.1:${taken})`);
    expect(err.hint).toMatch(/auto_correct: true/);
  });

  it('finds UDP holders and a fixed proxy port too, all in one error', async () => {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => udp.close(() => resolve())));
    const taken = await listener();
    const env = fakeEnv([port(udp.address().port, { protocol: 'udp' })], { socks: taken, auth: false });
    const err = (await checkPortCollisions(env).catch((e: unknown) => e)) as EnvboxError;
    expect(err.details?.problems).toEqual([
      expect.stringMatching(new RegExp(`^host port ${udp.address().port} \\(udp, ports\\[0\\]\\) is in use by .* \\(pid ${process.pid}`)),
      expect.stringMatching(new RegExp(`^proxy port ${taken} \\(proxy.socks\\) is in use by .* \\(pid ${process.pid}`)),
    ]);
  });

  it('with auto_correct picks a free port, says so, and saves the plan the agent will use', async () => {
    const taken = await listener();
    const env = fakeEnv([port(taken, { autoCorrect: true })]);
    const told: string[] = [];
    const plan = await checkPortCollisions(env, { info: (t) => told.push(t) });
    const chosen = plan.forwards[0]!.hostPort;
    expect(chosen).not.toBe(taken);
    expect(told).toEqual([expect.stringMatching(new RegExp(`^host port ${taken} is in use by .*; guest port ${taken} is forwarded from host port ${chosen} instead$`))]);
    expect(JSON.parse(await readFile(join(env.dir, 'ports.json'), 'utf8'))).toEqual(plan);
    expect((await currentPlan(env)).forwards[0]!.hostPort).toBe(chosen);
  });

  it('refuses a host address that is not on this host', async () => {
    const err = (await checkPortCollisions(fakeEnv([port(18000, { hostIp: '192.0.2.7' })])).catch((e: unknown) => e)) as EnvboxError;
    expect(err.message).toContain('host_ip 192.0.2.7 (port 18000) is not an address of this host');
  });
});
