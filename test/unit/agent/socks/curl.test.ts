import { execFile } from 'node:child_process';
import { describe, expect, it, vi } from 'vitest';
import { startHttp, startProxy, type Proxy } from './peers.js';

interface CurlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** curl as a browser would use the proxy; async because the proxy runs in this process. */
function curl(args: string[]): Promise<CurlResult> {
  return new Promise((resolve) => {
    // A clean environment: no http_proxy/ALL_PROXY from the machine running the tests.
    execFile('curl', ['-sS', '--max-time', '10', ...args], { env: { PATH: process.env.PATH } }, (err, stdout, stderr) =>
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr }),
    );
  });
}

const settled = (proxy: Proxy) => vi.waitFor(() => expect(proxy.server.stats().active).toBe(0));

describe('curl through the SOCKS5 proxy', () => {
  it('--socks5-hostname hands the name to the guest unresolved', async () => {
    const web = await startHttp();
    const proxy = await startProxy();
    const result = await curl(['--socks5-hostname', `127.0.0.1:${proxy.port}`, `http://app.guest:${web}/page`]);
    expect(result).toEqual({ code: 0, stdout: 'hello from the guest: /page', stderr: '' });
    expect(proxy.dialed).toEqual([{ host: 'app.guest', port: web, kind: 'domain' }]);
    await settled(proxy);
  });

  it('--socks5 sends the address curl resolved itself', async () => {
    const web = await startHttp();
    const proxy = await startProxy();
    const result = await curl(['--socks5', `127.0.0.1:${proxy.port}`, `http://127.0.0.1:${web}/`]);
    expect(result).toEqual({ code: 0, stdout: 'hello from the guest: /', stderr: '' });
    expect(proxy.dialed).toEqual([{ host: '127.0.0.1', port: web, kind: 'ipv4' }]);
  });

  it('--socks5-hostname reaches a guest service on ::1', async () => {
    const web = await startHttp('::1');
    const proxy = await startProxy();
    const result = await curl(['--socks5-hostname', `127.0.0.1:${proxy.port}`, `http://[::1]:${web}/v6`]);
    expect(result).toEqual({ code: 0, stdout: 'hello from the guest: /v6', stderr: '' });
    expect(proxy.dialed).toEqual([{ host: '::1', port: web, kind: 'ipv6' }]);
  });

  it('logs in with --proxy-user', async () => {
    const web = await startHttp();
    const proxy = await startProxy({ auth: { username: 'dev', password: 'pa:ss' } });
    for (const flag of ['--socks5', '--socks5-hostname']) {
      const host = flag === '--socks5' ? '127.0.0.1' : 'app.guest';
      const url = `http://${host}:${web}/in`;
      const result = await curl([flag, `127.0.0.1:${proxy.port}`, '--proxy-user', 'dev:pa:ss', url]);
      expect(result).toEqual({ code: 0, stdout: 'hello from the guest: /in', stderr: '' });
    }
    await settled(proxy);
  });

  it.each([
    ['a wrong password', ['--proxy-user', 'dev:wrong'], /rejected by the SOCKS5 server/],
    ['no credentials', [], /No authentication method was acceptable/],
  ])('fails with %s', async (_, extra, message) => {
    const web = await startHttp();
    const proxy = await startProxy({ auth: { username: 'dev', password: 'pa:ss' } });
    const result = await curl(['--socks5-hostname', `127.0.0.1:${proxy.port}`, ...extra, `http://app.guest:${web}/`]);
    expect(result.code).toBe(97); // CURLE_PROXY
    expect(result.stderr).toMatch(message);
    expect(proxy.dialed).toEqual([]);
    await settled(proxy);
  });

  it('shows the reply code of a refused guest port', async () => {
    const proxy = await startProxy();
    const result = await curl(['--socks5-hostname', `127.0.0.1:${proxy.port}`, 'http://app.guest:1/']);
    expect(result.code).toBe(97);
    expect(result.stderr).toBe("curl: (97) Can't complete SOCKS5 connection to app.guest. (5)\n");
  });
});
