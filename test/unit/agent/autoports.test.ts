import { describe, expect, it } from 'vitest';
import { autoForwardable, diffAutoPorts, wantedAutoPorts, type AutoPortRules } from '../../../src/agent/autoports.js';
import { TCP_LISTEN, type SocketEntry } from '../../../src/agent/procnet.js';

const rules = (extra: Partial<AutoPortRules> = {}): AutoPortRules => ({ only: [], ignore: [], exclude: new Set(), ...extra });
const listen = (ip: string, port: number, protocol: 'tcp' | 'udp' = 'tcp', state = TCP_LISTEN): SocketEntry => ({ protocol, ip, port, state, uid: 0, inode: 1 });

describe('autoForwardable', () => {
  it.each([
    ['a dev server', 3000, rules(), true],
    ['sshd', 22, rules(), false],
    ['sshd even when only names it', 22, rules({ only: [{ from: 1, to: 100 }] }), false],
    ['a privileged port', 80, rules(), false],
    ['a privileged port named in only', 80, rules({ only: [{ from: 80, to: 80 }] }), true],
    ['an excluded port (a static forward, the proxy)', 5432, rules({ exclude: new Set([5432]) }), false],
    ['an ignored port', 9229, rules({ ignore: [{ from: 9229, to: 9229 }] }), false],
    ['a port in an ignored range', 3500, rules({ ignore: [{ from: 3000, to: 3999 }] }), false],
    ['the end of an ignored range', 3999, rules({ ignore: [{ from: 3000, to: 3999 }] }), false],
    ['a port outside only', 8080, rules({ only: [{ from: 3000, to: 3999 }, { from: 8000, to: 8000 }] }), false],
    ['a port inside only', 8000, rules({ only: [{ from: 3000, to: 3999 }, { from: 8000, to: 8000 }] }), true],
    ['ignore wins over only', 3001, rules({ only: [{ from: 3000, to: 3999 }], ignore: [{ from: 3001, to: 3001 }] }), false],
  ])('%s (%i)', (_, port, r, expected) => {
    expect(autoForwardable(port, r)).toBe(expected);
  });
});

describe('wantedAutoPorts', () => {
  it('dials loopback and wildcard listeners on 127.0.0.1, IPv6-only ones on ::1, others where they listen', () => {
    const entries = [
      listen('127.0.0.1', 3000),
      listen('0.0.0.0', 3001),
      listen('::', 3002),
      listen('::1', 3003),
      listen('::1', 3004),
      listen('127.0.0.1', 3004),
      listen('10.0.3.15', 3005),
      listen('::ffff:127.0.0.1', 3006),
      listen('fd42::5', 3007),
    ];
    expect(Object.fromEntries(wantedAutoPorts(entries, rules()))).toEqual({
      3000: '127.0.0.1',
      3001: '127.0.0.1',
      3002: '127.0.0.1',
      3003: '::1',
      3004: '127.0.0.1',
      3005: '10.0.3.15',
      3006: '127.0.0.1',
      3007: 'fd42::5',
    });
  });

  it('looks only at TCP sockets in LISTEN and applies the rules', () => {
    const entries = [
      listen('0.0.0.0', 22),
      listen('127.0.0.1', 5353, 'udp', 0x07),
      listen('127.0.0.1', 4000, 'tcp', 0x01),
      listen('127.0.0.1', 5432),
      listen('127.0.0.1', 8000),
    ];
    expect([...wantedAutoPorts(entries, rules({ exclude: new Set([5432]) })).keys()]).toEqual([8000]);
  });
});

describe('diffAutoPorts', () => {
  const map = (entries: [number, string][]) => new Map(entries);
  it.each([
    ['nothing to nothing', map([]), map([]), { add: [], remove: [] }],
    ['a new listener', map([]), map([[3000, '127.0.0.1']]), { add: [{ port: 3000, guestIp: '127.0.0.1' }], remove: [] }],
    ['a listener gone', map([[3000, '127.0.0.1']]), map([]), { add: [], remove: [3000] }],
    ['unchanged', map([[3000, '127.0.0.1']]), map([[3000, '127.0.0.1']]), { add: [], remove: [] }],
    ['moved from ::1 to 127.0.0.1', map([[3000, '::1']]), map([[3000, '127.0.0.1']]), { add: [{ port: 3000, guestIp: '127.0.0.1' }], remove: [3000] }],
    [
      'several, sorted',
      map([[9000, '127.0.0.1'], [5000, '127.0.0.1']]),
      map([[8000, '127.0.0.1'], [5000, '127.0.0.1'], [4000, '127.0.0.1']]),
      { add: [{ port: 4000, guestIp: '127.0.0.1' }, { port: 8000, guestIp: '127.0.0.1' }], remove: [9000] },
    ],
  ])('%s', (_, current, wanted, expected) => {
    expect(diffAutoPorts(current, wanted)).toEqual(expected);
  });
});
