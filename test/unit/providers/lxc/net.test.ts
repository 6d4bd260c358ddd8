import { describe, expect, it } from 'vitest';
import {
  bridgeName,
  formatIPv4,
  freeAddress,
  gatewayOf,
  macFor,
  nftTable,
  outboundElements,
  overlaps,
  parseCidr,
  pickSubnet,
  usedCidrs,
  vethName,
} from '../../../../src/providers/lxc/net.js';
import { EnvboxError } from '../../../../src/util/errors.js';

const cidr = (text: string) => parseCidr(text)!;
const show = (c: { addr: number; prefix: number }) => `${formatIPv4(c.addr)}/${c.prefix}`;

describe('addresses', () => {
  it.each([
    ['10.71.0.0/24', '10.71.0.0/24'],
    ['10.71.0.7/24', '10.71.0.0/24'],
    ['192.0.2.2', '192.0.2.2/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
  ])('parses %s as %s', (text, expected) => {
    expect(show(cidr(text))).toBe(expected);
  });

  it.each(['10.71.0/24', '10.71.0.256/24', '10.71.0.0/33', 'fd00::2/64', 'default'])('rejects %s', (text) => {
    expect(parseCidr(text)).toBeUndefined();
  });

  it.each([
    ['10.71.0.0/24', '10.0.0.0/8', true],
    ['10.71.0.0/24', '10.71.1.0/24', false],
    ['10.71.0.0/24', '10.71.0.200', true],
    ['192.0.2.0/24', '10.71.0.0/24', false],
  ])('%s overlaps %s: %s', (a, b, expected) => {
    expect(overlaps(cidr(a), cidr(b))).toBe(expected);
  });
});

describe('pickSubnet', () => {
  it.each([
    [[], '10.71.0.0/24'],
    [['192.0.2.0/24', '192.0.2.2', '0.0.0.0/0'], '10.71.0.0/24'],
    [['10.71.0.0/24'], '10.71.1.0/24'],
    [['10.71.0.0/16'], '10.72.0.0/24'],
    [['10.0.0.0/8'], '172.29.0.0/24'],
  ])('with %j in use -> %s', (used, expected) => {
    expect(show(pickSubnet(used.map(cidr)))).toBe(expected);
  });

  it('fails with a hint when every candidate is taken', () => {
    expect(() => pickSubnet([cidr('10.0.0.0/8'), cidr('172.16.0.0/12')])).toThrow(EnvboxError);
  });

  it('reads routes and addresses from ip -j, ignoring the default route', () => {
    const routes = JSON.stringify([{ dst: 'default', gateway: '192.0.2.1' }, { dst: '192.0.2.0/24' }, { dst: '10.71.0.5' }]);
    const addrs = JSON.stringify([{ addr_info: [{ family: 'inet', local: '10.72.3.4', prefixlen: 16 }, { family: 'inet6', local: 'fd00::2', prefixlen: 64 }] }]);
    expect(usedCidrs(routes, addrs).map(show)).toEqual(['192.0.2.0/24', '10.71.0.5/32', '10.72.0.0/16']);
  });
});

describe('leases', () => {
  const subnet = cidr('10.71.4.0/24');
  it('gateway is .1, guests start at .2 and skip leased ones', () => {
    expect(gatewayOf(subnet)).toBe('10.71.4.1');
    expect(freeAddress(subnet, ['10.71.4.1'])).toBe('10.71.4.2');
    expect(freeAddress(subnet, ['10.71.4.1', '10.71.4.2', '10.71.4.4'])).toBe('10.71.4.3');
  });
  it('a full /24 has no address', () => {
    const all = Array.from({ length: 253 }, (_, i) => `10.71.4.${i + 2}`);
    expect(freeAddress(subnet, all)).toBeUndefined();
  });
});

describe('names', () => {
  it('veth names are stable, distinct and fit IFNAMSIZ', () => {
    expect(vethName('webapp-1a2b3c4d')).toBe(vethName('webapp-1a2b3c4d'));
    expect(vethName('webapp-1a2b3c4d')).not.toBe(vethName('webapp-1a2b3c4e'));
    expect(vethName('a-very-long-environment-name-12345678').length).toBeLessThanOrEqual(15);
  });
  it('MACs are locally administered unicast', () => {
    expect(macFor('x')).toMatch(/^0a(:[0-9a-f]{2}){5}$/);
  });
  it.each([
    [{}, 'envbox0'],
    [{ XDG_STATE_HOME: '/home/me/.local/state' }, 'envbox0'],
    [{ ENVBOX_BRIDGE: 'ebxtest0' }, 'ebxtest0'],
    [{ ENVBOX_BRIDGE: 'ebxtest0', XDG_STATE_HOME: '/tmp/x' }, 'ebxtest0'],
  ])('bridge name from %j is %s', (env, expected) => {
    expect(bridgeName(env, '/home/me')).toBe(expected);
  });
  it('another state folder gets its own bridge', () => {
    const a = bridgeName({ XDG_STATE_HOME: '/tmp/state-a' }, '/home/me');
    const b = bridgeName({ XDG_STATE_HOME: '/tmp/state-b' }, '/home/me');
    expect(a).toMatch(/^ebx[0-9a-f]{8}$/);
    expect(b).not.toBe(a);
    expect(bridgeName({ XDG_STATE_HOME: '/tmp/state-a/' }, '/home/me')).toBe(a);
  });
  it.each(['0bad', 'much-too-long-name', 'a b', 'x;y'])('refuses ENVBOX_BRIDGE=%s', (name) => {
    expect(() => bridgeName({ ENVBOX_BRIDGE: name }, '/home/me')).toThrow(EnvboxError);
  });
});

describe('nft', () => {
  it('drops forwarding from guests outside @outbound and NATs only those inside', () => {
    const text = nftTable('envbox0', '10.71.0.0/24');
    expect(text).toContain('table inet envbox0 {');
    expect(text).toContain('iifname "envbox0" ip saddr @outbound accept\n    iifname "envbox0" drop');
    expect(text).toContain('oifname "envbox0" ct state established,related accept\n    oifname "envbox0" drop');
    expect(text).toContain('oifname != "envbox0" ip saddr @outbound ip daddr != 10.71.0.0/24 masquerade');
  });

  it.each([
    ['table inet envbox0 {\n\tset outbound {\n\t\ttype ipv4_addr\n\t}\n}', []],
    ['table inet envbox0 {\n\tset outbound {\n\t\ttype ipv4_addr\n\t\telements = { 10.71.0.2 }\n\t}\n}', ['10.71.0.2']],
    ['set outbound {\n\t\ttype ipv4_addr\n\t\telements = { 10.71.0.2, 10.71.0.3,\n\t\t\t     10.71.0.9 }\n\t}', ['10.71.0.2', '10.71.0.3', '10.71.0.9']],
  ])('reads the @outbound elements from a listing', (text, expected) => {
    expect(outboundElements(text)).toEqual(expected);
  });
});
