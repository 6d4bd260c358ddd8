import http from 'node:http';
import type { AddressInfo } from 'node:net';
import vm from 'node:vm';
import { describe, expect, it, onTestFinished } from 'vitest';
import { renderPac, servePac, type PacSpec } from '../../../../src/agent/socks/pac.js';

const spec: PacSpec = {
  proxy: '127.0.0.1:1080',
  names: ['webapp.test', 'Guest.', 'localhost'],
  addresses: ['10.0.3.15', '10.0.4.0/24', 'fd42::5', 'fd42:1::/64', '172.16.0.0/12'],
};
const PROXY = 'SOCKS5 127.0.0.1:1080; SOCKS 127.0.0.1:1080';

/** Runs the PAC the way a browser does: a bare script, then FindProxyForURL(url, host). */
function findProxy(pac: string, url: string): unknown {
  const context = vm.createContext({});
  vm.runInContext(pac, context);
  return vm.runInContext(`FindProxyForURL(${JSON.stringify(url)}, ${JSON.stringify(new URL(url).hostname)})`, context);
}

describe('renderPac', () => {
  it.each([
    ['http://webapp.test/', PROXY],
    ['https://api.webapp.test:8443/x', PROXY],
    ['http://WEBAPP.TEST./', PROXY],
    ['http://notwebapp.test/', 'DIRECT'],
    ['http://webapp.test.example.com/', 'DIRECT'],
    ['http://guest:3000/', PROXY],
    ['http://db.guest/', PROXY],
    ['http://localhost:8000/', PROXY],
    ['http://app.localhost/', PROXY],
    ['http://10.0.3.15:8000/', PROXY],
    ['http://10.0.3.16/', 'DIRECT'],
    ['http://10.0.4.200/', PROXY],
    ['http://10.0.5.1/', 'DIRECT'],
    ['http://172.31.255.255/', PROXY],
    ['http://172.32.0.1/', 'DIRECT'],
    ['http://[fd42::5]:8080/', PROXY],
    ['http://[fd42:0:0:0:0:0:0:5]/', PROXY],
    ['http://[fd42::6]/', 'DIRECT'],
    ['http://[fd42:1::abcd]/', PROXY],
    ['http://[fd42:1:0:1::1]/', 'DIRECT'],
    ['http://[::ffff:10.0.3.15]/', 'DIRECT'],
    ['http://example.com/', 'DIRECT'],
    ['http://8.8.8.8/', 'DIRECT'],
    ['http://[::1]/', 'DIRECT'],
  ])('%s -> %s', (url, expected) => {
    expect(findProxy(renderPac(spec), url)).toBe(expected);
  });

  it('matches the host it is given, with or without IPv6 brackets', () => {
    const context = vm.createContext({});
    vm.runInContext(renderPac(spec), context);
    const find = context.FindProxyForURL as (url: string, host: string) => string;
    expect([find('http://[fd42::5]/', 'fd42::5'), find('http://[fd42::5]/', '[fd42::5]')]).toEqual([PROXY, PROXY]);
    expect(find('http://x/', 'fd42::5%eth0')).toBe(PROXY);
    expect(find('http://x/', 'not:an:address')).toBe('DIRECT');
  });

  it('matches whole IPv4 and IPv6 spaces and exact hosts', () => {
    const pac = renderPac({ proxy: '[::1]:1080', names: [], addresses: ['0.0.0.0/0', '::/0'] });
    expect(findProxy(pac, 'http://192.0.2.1/')).toBe('SOCKS5 [::1]:1080; SOCKS [::1]:1080');
    expect(findProxy(pac, 'http://[2001:db8::1]/')).toBe('SOCKS5 [::1]:1080; SOCKS [::1]:1080');
    expect(findProxy(pac, 'http://example.com/')).toBe('DIRECT');
  });

  it.each([
    ['proxy', { proxy: '127.0.0.1:1080"; alert(1); "' }, 'the proxy address "127.0.0.1:1080\\"; alert(1); \\""'],
    ['proxy', { proxy: '127.0.0.1:70000' }, 'the proxy address "127.0.0.1:70000"'],
    ['proxy', { proxy: 'localhost' }, 'the proxy address "localhost"'],
    ['name', { names: ['a"b'] }, 'the host name "a\\"b"'],
    ['name', { names: ["a'b"] }, 'the host name "a\'b"'],
    ['name', { names: ['a\\b'] }, 'the host name "a\\\\b"'],
    ['name', { names: ['app\n}alert(1);{'] }, 'the host name "app\\n}alert(1);{"'],
    ['name', { names: ['app\u2028x'] }, 'the host name "app\u2028x"'],
    ['name', { names: ['*.app'] }, 'the host name "*.app"'],
    ['name', { names: [''] }, 'the host name ""'],
    ['name', { names: ['-app'] }, 'the host name "-app"'],
    ['name', { names: ['a..b'] }, 'the host name "a..b"'],
    ['name', { names: ['x'.repeat(64)] }, `the host name "${'x'.repeat(64)}"`],
    ['address', { addresses: ['10.0.0.0/33'] }, 'the address "10.0.0.0/33"'],
    ['address', { addresses: ['10.0.0.0/'] }, 'the address "10.0.0.0/"'],
    ['address', { addresses: ['10.0.0.0/8/8'] }, 'the address "10.0.0.0/8/8"'],
    ['address', { addresses: ['fd42::/129'] }, 'the address "fd42::/129"'],
    ['address', { addresses: ['fe80::1%eth0'] }, 'the address "fe80::1%eth0"'],
    ['address', { addresses: ['10.0.0.1"]'] }, 'the address "10.0.0.1\\"]"'],
    ['address', { addresses: ['guest.test'] }, 'the address "guest.test"'],
  ])('refuses a bad %s: %j', (_, bad, what) => {
    expect(() => renderPac({ ...spec, ...bad })).toThrow(`cannot put ${what} in the proxy PAC file`);
  });
});

describe('servePac', () => {
  async function serve(pac: string | (() => string)): Promise<string> {
    const server = http.createServer(servePac(pac));
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/proxy.pac`;
  }

  it('serves the PAC with its content type and no caching', async () => {
    const url = await serve(renderPac(spec));
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-ns-proxy-autoconfig');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.text()).toBe(renderPac(spec));
    const head = await fetch(url, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-length'), await head.text()]).toEqual([
      200,
      String(Buffer.byteLength(renderPac(spec))),
      '',
    ]);
  });

  it('renders per request when given a function', async () => {
    let address = '10.0.3.15';
    const url = await serve(() => renderPac({ ...spec, addresses: [address] }));
    const before = await (await fetch(url)).text();
    address = '10.0.3.99';
    const after = await (await fetch(url)).text();
    expect([findProxy(before, 'http://10.0.3.15/'), findProxy(before, 'http://10.0.3.99/')]).toEqual([PROXY, 'DIRECT']);
    expect([findProxy(after, 'http://10.0.3.15/'), findProxy(after, 'http://10.0.3.99/')]).toEqual(['DIRECT', PROXY]);
  });

  it('answers other methods with 405', async () => {
    const response = await fetch(await serve('x'), { method: 'POST', body: 'x' });
    expect([response.status, response.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
  });
});
