import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, guestHttp, runTracked, scratch, socksGet, type Project, type Scratch } from './project.js';

// Two envs' proxies side by side, one with credentials: each reaches its own guest by name.

interface ProxyInfo {
  port: number;
  address: string;
  pacUrl: string;
  auth: { username: string; password: string } | null;
}

let s: Scratch;
let one: Project;
let two: Project;

const proxyOf = async (p: Project) => (await p.json<{ proxy: ProxyInfo }>(['proxy'])).proxy;

beforeAll(async () => {
  s = await scratch();
  one = await s.project('one', 'name: agent-p1\nnetwork: { outbound: false }\nproxy: { socks: auto }\n');
  two = await s.project('two', 'name: agent-p2\nnetwork: { outbound: false }\nproxy: { socks: auto, auth: true }\n');
  for (const p of [one, two]) {
    const up = await p.env(['up']);
    expect(up.code, up.stderr).toBe(0);
    await guestHttp(p, '127.0.0.1', 8000, `served by ${p.name}`);
  }
});

afterAll(async () => {
  await s?.cleanup();
});

describe("two envs' proxies at once", () => {
  it('listen on different ports and each reaches its own guest', async () => {
    const [a, b] = [await proxyOf(one), await proxyOf(two)];
    expect(a.port).not.toBe(b.port);
    expect(a.auth).toBeNull();
    expect(b.auth).toMatchObject({ username: 'envbox', password: expect.stringMatching(/^[A-Za-z0-9_-]{24}$/) });
    const creds = { userId: b.auth!.username, password: b.auth!.password };
    await eventually(async () => expect(await socksGet(a.port, 'agent-p1', 8000)).toBe('served by one'), 10_000);
    await eventually(async () => expect(await socksGet(b.port, 'agent-p2', 8000, creds)).toBe('served by two'), 10_000);
    expect(await socksGet(a.port, 'localhost', 8000)).toBe('served by one');
    await expect(socksGet(b.port, 'agent-p2', 8000)).rejects.toThrow();
  });

  it('tell curl how to use them, credentials included', async () => {
    const b = await proxyOf(two);
    const text = (await two.env(['proxy'])).stdout;
    expect(text).toContain(`SOCKS5 proxy into env "agent-p2": ${b.address} (user envbox, password ${b.auth!.password})`);
    const command = /curl .*$/m.exec(text)![0].split(' ');
    const r = await runTracked(s, command[0]!, ['-sS', '--max-time', '10', ...command.slice(1)], 20_000);
    expect(r).toMatchObject({ code: 0, stdout: 'served by two' });
  });

  it('serve PAC files that send only their own guest through them', async () => {
    const [a, b] = [await proxyOf(one), await proxyOf(two)];
    const find = async (pacUrl: string, url: string) => {
      const context = vm.createContext({});
      vm.runInContext(await (await fetch(pacUrl)).text(), context);
      return vm.runInContext(`FindProxyForURL(${JSON.stringify(url)}, ${JSON.stringify(new URL(url).hostname)})`, context) as string;
    };
    expect(await find(a.pacUrl, 'http://agent-p1:8000/')).toBe(`SOCKS5 ${a.address}; SOCKS ${a.address}`);
    expect(await find(a.pacUrl, 'http://api.agent-p1/')).toBe(`SOCKS5 ${a.address}; SOCKS ${a.address}`);
    expect(await find(a.pacUrl, 'http://agent-p2:8000/')).toBe('DIRECT');
    expect(await find(b.pacUrl, 'http://agent-p2:8000/')).toBe(`SOCKS5 ${b.address}; SOCKS ${b.address}`);
    expect(await find(a.pacUrl, 'https://example.com/')).toBe('DIRECT');
  });
});
