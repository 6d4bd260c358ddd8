import { describe, expect, it } from 'vitest';
import {
  encodeReply,
  formatIPv6,
  parseCredentials,
  parseGreeting,
  parseIPv6,
  parseRequest,
  Reply,
} from '../../../../src/agent/socks/protocol.js';

/** Every strict prefix of a complete message must ask for more bytes, never misparse. */
function expectIncremental(parse: (buf: Buffer) => { status: string }, message: Buffer): void {
  for (let n = 0; n < message.length; n++) expect(parse(message.subarray(0, n)).status, `prefix of ${n}`).toBe('more');
}

describe('parseGreeting', () => {
  it('parses methods and leaves what follows', () => {
    const message = Buffer.from([5, 2, 0, 2, 0xaa]);
    expectIncremental(parseGreeting, message.subarray(0, 4));
    expect(parseGreeting(message)).toEqual({ status: 'ok', value: Buffer.from([0, 2]), size: 4 });
  });

  it.each([
    ['SOCKS4', [4, 1, 0, 80], 'version byte 4'],
    ['an HTTP request', [...Buffer.from('GET / ')], 'version byte 71'],
    ['no methods', [5, 0], 'greeting offers no methods'],
  ])('rejects %s', (_, bytes, reason) => {
    expect(parseGreeting(Buffer.from(bytes))).toEqual({ status: 'reject', reason });
  });
});

describe('parseCredentials', () => {
  it('parses username and password incrementally', () => {
    const message = Buffer.from([1, 3, ...Buffer.from('dev'), 2, ...Buffer.from('pw')]);
    expectIncremental(parseCredentials, message);
    expect(parseCredentials(Buffer.concat([message, Buffer.from([5])]))).toEqual({
      status: 'ok',
      value: { username: Buffer.from('dev'), password: Buffer.from('pw') },
      size: 8,
    });
  });

  it('rejects a wrong sub-negotiation version', () => {
    expect(parseCredentials(Buffer.from([5, 1, 0x61]))).toEqual({ status: 'reject', reason: 'auth version byte 5' });
  });
});

describe('parseRequest', () => {
  const port = [0x1f, 0x90];
  it.each([
    ['IPv4', [1, 10, 0, 3, 15], { host: '10.0.3.15', port: 8080, kind: 'ipv4' }],
    ['IPv6', [4, ...parseIPv6('fd42::5')], { host: 'fd42::5', port: 8080, kind: 'ipv6' }],
    ['a domain, unresolved', [3, 9, ...Buffer.from('app.guest')], { host: 'app.guest', port: 8080, kind: 'domain' }],
    ['an IPv4 literal as a domain', [3, 9, ...Buffer.from('127.0.0.1')], { host: '127.0.0.1', port: 8080, kind: 'ipv4' }],
    ['an IPv6 literal as a domain', [3, 3, ...Buffer.from('::1')], { host: '::1', port: 8080, kind: 'ipv6' }],
  ])('parses %s', (_, address, target) => {
    const message = Buffer.from([5, 1, 0, ...address, ...port]);
    expectIncremental(parseRequest, message);
    expect(parseRequest(Buffer.concat([message, Buffer.from('early data')]))).toEqual({
      status: 'ok',
      value: target,
      size: message.length,
    });
  });

  it.each([
    ['BIND', [5, 2, 0, 1], Reply.commandNotSupported],
    ['UDP ASSOCIATE', [5, 3, 0, 1], Reply.commandNotSupported],
    ['an unknown address type', [5, 1, 0, 9], Reply.addressTypeNotSupported],
    ['a wrong version byte', [4, 1, 0, 1], Reply.generalFailure],
    ['an empty domain', [5, 1, 0, 3, 0, 0, 80], Reply.hostUnreachable],
    ['a domain with a newline', [5, 1, 0, 3, 2, 0x61, 0x0a, 0, 80], Reply.hostUnreachable],
    ['a domain with a space', [5, 1, 0, 3, 3, 0x61, 0x20, 0x62, 0, 80], Reply.hostUnreachable],
  ])('answers %s with its reply code', (_, bytes, reply) => {
    expect(parseRequest(Buffer.from(bytes))).toMatchObject({ status: 'reject', reply });
  });
});

describe('IPv6 text', () => {
  it.each([
    ['::1', '::1'],
    ['::', '::'],
    ['FD42:0:0:0:0:0:0:5', 'fd42::5'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:127.0.0.1', '::ffff:7f00:1'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
  ])('%s formats as %s', (text, formatted) => {
    expect(formatIPv6(parseIPv6(text))).toBe(formatted);
  });
});

describe('encodeReply', () => {
  it.each([
    ['IPv4', '127.0.0.1', 4242, [5, 0, 0, 1, 127, 0, 0, 1, 0x10, 0x92]],
    ['IPv6', '::1', 80, [5, 0, 0, 4, ...parseIPv6('::1'), 0, 80]],
    ['IPv6 with a zone', 'fe80::1%lo', 80, [5, 0, 0, 4, ...parseIPv6('fe80::1'), 0, 80]],
    ['no address', undefined, 4242, [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]],
  ])('encodes %s', (_, address, port, bytes) => {
    expect(encodeReply(Reply.succeeded, address, port)).toEqual(Buffer.from(bytes));
  });
});
