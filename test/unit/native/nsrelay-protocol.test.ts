import { describe, expect, it } from 'vitest';
import { DialError, replyFor } from '../../../src/agent/socks/dial.js';
import { Reply } from '../../../src/agent/socks/protocol.js';
import {
  DatagramDecoder,
  dialErrorFor,
  dialKindFor,
  encodeDatagram,
  encodeRequest,
  parseReply,
  relayHost,
} from '../../../src/native/nsrelay-protocol.js';

describe('relayHost', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
    ['::ffff:10.0.0.1', '::ffff:10.0.0.1'],
    ['localhost', 'localhost'],
    ['LocalHost', 'localhost'],
  ])('passes %s as %s', (host, relay) => expect(relayHost(host)).toBe(relay));

  it.each(['example.com', 'localhost.localdomain', '[127.0.0.1]', '1.2.3.04', '', '::1 ', 'fe80::1%eth0\nTCP'])(
    'leaves %j for the caller to resolve',
    (host) => expect(relayHost(host)).toBeUndefined(),
  );
});

describe('encodeRequest', () => {
  it('writes one line, with the timeout only for TCP', () => {
    expect(encodeRequest('TCP', '[::1]', 22).toString()).toBe('TCP ::1 22\n');
    expect(encodeRequest('TCP', '10.0.0.1', 80, 1500.2).toString()).toBe('TCP 10.0.0.1 80 1501\n');
    expect(encodeRequest('UDP', 'localhost', 53, 1500).toString()).toBe('UDP localhost 53\n');
  });

  it('rejects names and bad ports with DialErrors', () => {
    expect(() => encodeRequest('TCP', 'example.com', 80)).toThrow(expect.objectContaining({ kind: 'dns' }));
    for (const port of [0, 65536, 1.5, NaN]) {
      expect(() => encodeRequest('TCP', '127.0.0.1', port)).toThrow(expect.objectContaining({ kind: 'failure' }));
    }
  });
});

describe('parseReply and the error kinds', () => {
  it('parses OK and ERR lines', () => {
    expect(parseReply('OK')).toEqual({ ok: true });
    expect(parseReply('ERR ECONNREFUSED Connection refused')).toEqual({ ok: false, code: 'ECONNREFUSED', message: 'Connection refused' });
    expect(parseReply('ERR E999')).toEqual({ ok: false, code: 'E999', message: 'E999' });
    expect(parseReply('HELLO')).toMatchObject({ ok: false, code: 'BADREPLY' });
  });

  it.each([
    ['ECONNREFUSED', 'refused', Reply.connectionRefused],
    ['EHOSTUNREACH', 'unreachable', Reply.hostUnreachable],
    ['ENETUNREACH', 'network', Reply.networkUnreachable],
    ['EADDRNOTAVAIL', 'network', Reply.networkUnreachable],
    ['ETIMEDOUT', 'timeout', Reply.ttlExpired],
    ['NOTLITERAL', 'dns', Reply.hostUnreachable],
    ['BADREQ', 'failure', Reply.generalFailure],
    ['EMFILE', 'failure', Reply.generalFailure],
  ])('maps %s to %s (SOCKS reply %i)', (code, kind, reply) => {
    expect(dialKindFor(code)).toBe(kind);
    const err = dialErrorFor({ code, message: 'text' }, '127.0.0.1:80');
    expect(err).toBeInstanceOf(DialError);
    expect(err.message).toBe(`127.0.0.1:80 inside the guest: text (${code})`);
    expect(replyFor(err)).toBe(reply);
  });
});

describe('datagram framing', () => {
  it('round-trips datagrams whatever the chunk boundaries', () => {
    const msgs = [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(65535, 7), Buffer.from('last')];
    const stream = Buffer.concat(msgs.map(encodeDatagram));
    for (const step of [1, 2, 3, 1000, stream.length]) {
      const decoder = new DatagramDecoder();
      const out: Buffer[] = [];
      for (let at = 0; at < stream.length; at += step) out.push(...decoder.push(stream.subarray(at, at + step)));
      expect(out.map((m) => m.toString('hex'))).toEqual(msgs.map((m) => m.toString('hex')));
    }
  });

  it('refuses a datagram the length prefix cannot carry', () => {
    expect(() => encodeDatagram(Buffer.alloc(65536))).toThrow(RangeError);
  });
});
