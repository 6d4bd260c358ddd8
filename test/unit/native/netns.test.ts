/**
 * startNetnsDialer without root or a namespace: fake helpers stand in for native/nsrelay (a
 * small Node program speaking its wire protocol, and shell scripts that fail in set ways).
 * The real relay is tested in test/integration/native.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DialError } from '../../../src/agent/socks/dial.js';
import { nativeHelperPath } from '../../../src/native/locate.js';
import { startNetnsDialer, type NetnsDialer } from '../../../src/native/netns.js';

// Answers by port: 1 refused, 2 OK with a banner in the same write, 3 hangs up, 4 never ends
// its reply line, 5 never answers; anything else echoes (TCP bytes or UDP frames, verbatim).
const FAKE_RELAY = `
const net = require('node:net');
const path = process.argv[process.argv.indexOf('--socket') + 1];
const server = net.createServer({ allowHalfOpen: true }, (c) => {
  let head = Buffer.alloc(0);
  c.on('error', () => {});
  c.on('data', function request(chunk) {
    head = Buffer.concat([head, chunk]);
    const nl = head.indexOf(10);
    if (nl < 0) return;
    c.off('data', request);
    const port = head.subarray(0, nl).toString().split(' ')[2];
    const rest = head.subarray(nl + 1);
    if (port === '1') return c.end('ERR ECONNREFUSED Connection refused\\n');
    if (port === '2') return c.end('OK\\nbanner');
    if (port === '3') return c.destroy();
    if (port === '4') return c.write('x'.repeat(600));
    if (port === '5') return;
    c.write('OK\\n');
    c.write(rest);
    c.pipe(c);
  });
});
server.listen(path, () => process.stdout.write('READY 1\\n'));
process.stdin.on('end', () => { require('node:fs').rmSync(path, { force: true }); process.exit(0); });
process.stdin.resume();
`;

let tmp = '';
let fake = '';
const dialers: NetnsDialer[] = [];

function script(name: string, body: string, mode = 0o755): string {
  const path = join(tmp, name);
  writeFileSync(path, body);
  chmodSync(path, mode);
  return path;
}

function collect(stream: Duplex): Promise<string> {
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return new Promise((resolve, reject) => {
    stream.once('end', () => resolve(text));
    stream.once('error', reject);
  });
}

async function rejection(promise: Promise<unknown>): Promise<DialError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DialError);
  return err as DialError;
}

async function start(name: string, onExit?: (reason: string) => void): Promise<NetnsDialer> {
  const { dialer, reason } = await startNetnsDialer({ pid: process.pid, runDir: join(tmp, name), helper: fake, onExit });
  expect(reason).toBeUndefined();
  dialers.push(dialer!);
  return dialer!;
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'envbox-netns-unit-'));
  fake = script('fake-relay.cjs', `#!${process.execPath}\n${FAKE_RELAY}`);
});

afterAll(async () => {
  await Promise.allSettled(dialers.map((d) => d.close()));
  rmSync(tmp, { recursive: true, force: true });
});

describe('when the native relay is missing or cannot run', () => {
  it('nativeHelperPath finds nothing for a helper that is not built', () => {
    expect(nativeHelperPath('no-such-helper')).toBeUndefined();
    expect(nativeHelperPath('../package.json')).toBeUndefined();
  });

  it.each([
    ['a missing helper', () => join(tmp, 'missing'), /native relay is not built/],
    ['a helper that is not executable', () => script('plain', '#!/bin/sh\n', 0o644), /native relay is not built/],
    ['a helper that fails', () => script('fails', '#!/bin/sh\necho "nsrelay: entering the network namespace: Operation not permitted" >&2\nexit 1\n'), /^cannot relay into the guest network: entering the network namespace: Operation not permitted$/],
    ['a helper that dies silently', () => script('dies', '#!/bin/sh\nkill -9 $$\n'), /killed by SIGKILL/],
    ['a helper that says something else', () => script('chatty', '#!/bin/sh\necho hello\nsleep 5\n'), /unexpected output from the relay: hello/],
  ])('answers %s with a reason, never a throw', async (_, helper, reason) => {
    const result = await startNetnsDialer({ pid: process.pid, runDir: join(tmp, 'run'), helper: helper() });
    expect(result).toEqual({ reason: expect.stringMatching(reason) });
  });

  it('gives up on a helper that never gets ready, and stops it', async () => {
    const pidFile = join(tmp, 'hang.pid');
    const helper = script('hangs', `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 30\n`);
    const result = await startNetnsDialer({ pid: process.pid, runDir: join(tmp, 'run'), helper, startTimeoutMs: 300 });
    expect(result.reason).toMatch(/did not start within 300 ms/);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await expect.poll(() => existsSync(`/proc/${pid}`) && !/\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))).toBe(false);
  });

  it('refuses a socket path the kernel could not bind', async () => {
    const result = await startNetnsDialer({ pid: process.pid, runDir: join(tmp, 'x'.repeat(120)), helper: fake });
    expect(result.reason).toMatch(/longer than 107 bytes/);
  });
});

describe('dialing through a relay', () => {
  let dialer: NetnsDialer;
  beforeAll(async () => {
    dialer = await start('main', () => expect.fail('the relay should not exit'));
  });

  it('hands over a stream that carries bytes and half-close, banner included', async () => {
    expect(await collect(await dialer.dial({ host: '127.0.0.1', port: 2 }))).toBe('banner');
    const echo = await dialer.dial({ host: '::1', port: 8080 });
    const back = collect(echo);
    echo.end('hello');
    expect(await back).toBe('hello');
    expect(echo.readableHighWaterMark).toBe(1 << 20);
  });

  it('turns relay answers into DialErrors', async () => {
    expect((await rejection(dialer.dial({ host: '127.0.0.1', port: 1 }))).kind).toBe('refused');
    expect((await rejection(dialer.dial({ host: '127.0.0.1', port: 3 }))).message).toMatch(/closed the connection before answering/);
    expect((await rejection(dialer.dial({ host: '127.0.0.1', port: 4 }))).message).toMatch(/overlong reply/);
    expect((await rejection(dialer.dial({ host: 'example.com', port: 80 }))).kind).toBe('dns');
  });

  it('stops when the signal aborts, with the reason it was given', async () => {
    const reason = new DialError('timeout', 'no answer');
    expect(await rejection(dialer.dial({ host: '127.0.0.1', port: 5 }, AbortSignal.abort(reason)))).toBe(reason);
    const attempt = new AbortController();
    setTimeout(() => attempt.abort(), 50);
    expect((await rejection(dialer.dial({ host: '127.0.0.1', port: 5 }, attempt.signal))).message).toBe('dial aborted');
  });

  it('frames datagrams', async () => {
    const channel = await dialer.udp({ host: '127.0.0.1', port: 53 });
    const got: string[] = [];
    channel.on('message', (msg) => got.push(msg.toString()));
    for (const msg of ['one', '', 'three']) channel.send(Buffer.from(msg));
    await expect.poll(() => got).toEqual(['one', '', 'three']);
    const closed = new Promise((resolve) => channel.on('close', () => resolve(undefined)));
    channel.close();
    await closed;
  });
});

describe('the relay going away', () => {
  it('close() stops it without calling onExit', async () => {
    const exits: string[] = [];
    const dialer = await start('closing', (reason) => exits.push(reason));
    await dialer.close();
    expect(existsSync(dialer.socketPath)).toBe(false);
    expect(dialer.relayPid).toBeUndefined();
    expect((await rejection(dialer.dial({ host: '127.0.0.1', port: 8080 }))).message).toMatch(/no relay into the guest network: /);
    expect(exits).toEqual([]);
  });

  it('onExit hears about a relay that was killed, and its socket is cleaned up', async () => {
    const exits: string[] = [];
    const dialer = await start('killed', (reason) => exits.push(reason));
    process.kill(dialer.relayPid!, 'SIGKILL');
    await expect.poll(() => exits).toEqual(['the relay was killed by SIGKILL']);
    expect(existsSync(dialer.socketPath)).toBe(false);
    expect((await rejection(dialer.dial({ host: '127.0.0.1', port: 8080 }))).kind).toBe('failure');
  });
});
