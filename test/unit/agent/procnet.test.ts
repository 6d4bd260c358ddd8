import { describe, expect, it } from 'vitest';
import { bindOverlaps, linesInState, listening, parseProcNet } from '../../../src/agent/procnet.js';

// Real lines from a Linux x86-64 host (trailing columns as the kernel prints them).
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 389952 1 00000000fa38967d 100 0 0 10 0
   1: 012FD50A:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 373689 1 000000001f239181 100 0 0 10 5
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21345 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F40 0100007F:D2A8 01 00000000:00000000 00:00000000 00000000  1000        0 412222 1 0000000000000000 20 4 30 10 -1
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5501 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5502 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5503 1 0000000000000000 100 0 0 10 0
   3: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5504 1 0000000000000000 100 0 0 10 0
`;
const UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  128: 0100007F:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7001 2 0000000000000000 0
  129: 0100007F:A1B2 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 7002 2 0000000000000000 0
`;

describe('parseProcNet', () => {
  it('reads IPv4 addresses (little-endian words), big-endian ports, states, uids and inodes', () => {
    expect(parseProcNet(TCP, 'tcp', 'LE')).toEqual([
      { protocol: 'tcp', ip: '127.0.0.1', port: 8000, state: 0x0a, uid: 1000, inode: 389952 },
      { protocol: 'tcp', ip: '10.213.47.1', port: 53, state: 0x0a, uid: 0, inode: 373689 },
      { protocol: 'tcp', ip: '0.0.0.0', port: 22, state: 0x0a, uid: 0, inode: 21345 },
      { protocol: 'tcp', ip: '127.0.0.1', port: 8000, state: 0x01, uid: 1000, inode: 412222 },
    ]);
  });

  it('reads IPv6: loopback, any, v4-mapped and a global address', () => {
    expect(parseProcNet(TCP6, 'tcp', 'LE').map((e) => `${e.ip} ${e.port}`)).toEqual([
      '::1 9000',
      ':: 8080',
      '::ffff:127.0.0.1 3000',
      '2001:db8::1 80',
    ]);
  });

  it('reads big-endian hosts too', () => {
    const line = '   0: 7F000001:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n';
    expect(parseProcNet(line, 'tcp', 'BE')[0]).toMatchObject({ ip: '127.0.0.1', port: 8000 });
  });

  it('skips headers, blank and malformed lines', () => {
    expect(parseProcNet('garbage\n\n   0: XYZ:1 00:00 0A\n   1: 0100007F 00000000:0000 0A\n', 'tcp', 'LE')).toEqual([]);
  });
});

describe('listening', () => {
  it('keeps TCP sockets in LISTEN (0A) and unconnected UDP sockets (07)', () => {
    const entries = [...parseProcNet(TCP, 'tcp', 'LE'), ...parseProcNet(UDP, 'udp', 'LE')];
    expect(listening(entries).map((e) => `${e.protocol} ${e.ip}:${e.port}`)).toEqual([
      'tcp 127.0.0.1:8000',
      'tcp 10.213.47.1:53',
      'tcp 0.0.0.0:22',
      'udp 127.0.0.1:5353',
    ]);
  });
});

describe('bindOverlaps', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1', true],
    ['0.0.0.0', '127.0.0.1', true],
    ['127.0.0.1', '0.0.0.0', true],
    ['::', '127.0.0.1', true],
    ['127.0.0.1', '::', true],
    ['::ffff:127.0.0.1', '127.0.0.1', true],
    ['0.0.0.0', '::1', false],
    ['::1', '127.0.0.1', false],
    ['127.0.0.1', '127.0.0.2', false],
    ['10.0.0.1', '127.0.0.1', false],
    ['::1', '::1', true],
    ['localhost', '127.0.0.1', true],
  ])('held %s, wanted %s → %s', (held, want, expected) => {
    expect(bindOverlaps(held, want)).toBe(expected);
  });
});

describe('linesInState', () => {
  const table = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1234 1 0000000000000000 100 0 0 10 0',
    '   1: 0100007F:1F41 0100007F:8F2A 06 00000000:00000000 03:00000FA0 00000000     0        0 0 3 0000000000000000',
    '  12: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0',
    '  13: 0100007F:0A0A 0100007F:0A0A 01 00000000:00000000 00:00000000 00000000     0        0 98 1',
    '',
  ].join('\n');

  it('keeps only the LISTEN lines (state 0A), whatever the addresses look like', () => {
    const lines = linesInState(Buffer.from(table));
    expect(lines.map((l) => l.trim().split(/\s+/)[0])).toEqual(['0:', '12:']);
    expect(parseProcNet(lines.join('\n'), 'tcp', 'LE').map((e) => e.port)).toEqual([8000, 22]);
  });

  it('takes another state, and a table without a final newline', () => {
    expect(linesInState(Buffer.from(table.trimEnd()), 0x06).map((l) => l.trim().split(/\s+/)[0])).toEqual(['1:']);
    expect(linesInState(Buffer.alloc(0))).toEqual([]);
  });
});
