import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { EnvboxError } from '../../util/errors.js';

/**
 * Pure address arithmetic and rule text for envbox's bridge. The I/O that applies them is in bridge.ts.
 */

export interface Cidr {
  addr: number;
  prefix: number;
}

export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    value = value * 256 + Number(part);
  }
  return value;
}

export function formatIPv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** "10.0.0.0/8" or a bare address (a /32). */
export function parseCidr(text: string): Cidr | undefined {
  const [addrText, prefixText] = text.split('/');
  const addr = parseIPv4(addrText ?? '');
  const prefix = prefixText === undefined ? 32 : Number(prefixText);
  if (addr === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) return undefined;
  return { addr: addr - (addr % 2 ** (32 - prefix)), prefix };
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const prefix = Math.min(a.prefix, b.prefix);
  const block = 2 ** (32 - prefix);
  return Math.floor(a.addr / block) === Math.floor(b.addr / block);
}

/**
 * The /24s envbox tries for its bridge, in order: 10.71-10.79.x.0 (off the well-trodden 10.0.x, Docker's
 * 172.17-31 and libvirt's 192.168.122), then 172.29.x.0.
 */
function* candidateSubnets(): Generator<Cidr> {
  for (let second = 71; second <= 79; second++) {
    for (let third = 0; third < 256; third++) yield { addr: (10 * 256 + second) * 65536 + third * 256, prefix: 24 };
  }
  for (let third = 0; third < 256; third++) yield { addr: (172 * 256 + 29) * 65536 + third * 256, prefix: 24 };
}

/** The first candidate /24 that overlaps none of the host's routes and addresses (the default route aside). */
export function pickSubnet(inUse: Cidr[]): Cidr {
  const relevant = inUse.filter((c) => c.prefix > 0);
  for (const candidate of candidateSubnets()) {
    if (!relevant.some((used) => overlaps(candidate, used))) return candidate;
  }
  throw new EnvboxError('NO_FREE_SUBNET', 'every private /24 envbox tries is already routed on this host', {
    hint: 'remove unused bridges or routes in 10.71.0.0/16-10.79.0.0/16 or 172.29.0.0/16',
  });
}

/** The gateway (.1) of a /24. */
export function gatewayOf(subnet: Cidr): string {
  return formatIPv4(subnet.addr + 1);
}

/** The lowest free guest address (.2-.254) of the bridge's /24. */
export function freeAddress(subnet: Cidr, taken: Iterable<string>): string | undefined {
  const used = new Set(taken);
  for (let host = 2; host < 255; host++) {
    const addr = formatIPv4(subnet.addr + host);
    if (!used.has(addr)) return addr;
  }
  return undefined;
}

/** Host routes and addresses from `ip -j route show table all` and `ip -j addr show`. */
export function usedCidrs(routesJson: string, addrsJson: string): Cidr[] {
  const out: Cidr[] = [];
  for (const route of JSON.parse(routesJson || '[]') as { dst?: string }[]) {
    const cidr = route.dst && route.dst !== 'default' ? parseCidr(route.dst) : undefined;
    if (cidr) out.push(cidr);
  }
  for (const link of JSON.parse(addrsJson || '[]') as { addr_info?: { family?: string; local?: string; prefixlen?: number }[] }[]) {
    for (const info of link.addr_info ?? []) {
      if (info.family !== 'inet' || !info.local) continue;
      const cidr = parseCidr(`${info.local}/${info.prefixlen ?? 32}`);
      if (cidr) out.push(cidr);
    }
  }
  return out;
}

const IFNAME = /^[A-Za-z][A-Za-z0-9_.-]{0,14}$/;

/**
 * The bridge (and nft table) name: ENVBOX_BRIDGE if set, else `envbox0` for the usual state folder. An envbox
 * run with another state folder (XDG_STATE_HOME: tests, a second install) keeps its address leases there,
 * so it gets a bridge of its own, named after that folder; sharing envbox0 would hand out the same
 * addresses twice.
 */
export function bridgeName(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  const stateHome = env.XDG_STATE_HOME;
  const usual = !stateHome || resolve(stateHome) === join(home, '.local', 'state');
  const name = env.ENVBOX_BRIDGE || (usual ? 'envbox0' : `ebx${createHash('sha256').update(resolve(stateHome)).digest('hex').slice(0, 8)}`);
  if (!IFNAME.test(name)) {
    throw new EnvboxError('BRIDGE_NAME', `ENVBOX_BRIDGE=${JSON.stringify(name)} is not a valid interface name`, {
      hint: 'use up to 15 letters, digits, "_", "." or "-", starting with a letter',
    });
  }
  return name;
}

/** The host end of the env's veth: stable per env id, within the 15-character limit. */
export function vethName(id: string): string {
  return `ebx${createHash('sha256').update(id).digest('hex').slice(0, 12)}`;
}

/** A locally administered, stable MAC so the guest's neighbours keep it across restarts. */
export function macFor(id: string): string {
  const bytes = createHash('sha256').update(`mac:${id}`).digest().subarray(0, 5);
  return ['0a', ...[...bytes].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * envbox's own nft table. Guests reach each other and the host; a guest reaches further only when its
 * address is in @outbound (NAT), whatever net.ipv4.ip_forward says (another env may have turned it on).
 * Nothing outside reaches a guest except replies.
 */
export function nftTable(bridge: string, subnet: string): string {
  const br = JSON.stringify(bridge);
  return [
    `table inet ${bridge} {`,
    `  set outbound { type ipv4_addr; }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname ${br} oifname ${br} accept`,
    `    iifname ${br} ip saddr @outbound accept`,
    `    iifname ${br} drop`,
    `    oifname ${br} ct state established,related accept`,
    `    oifname ${br} drop`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    oifname != ${br} ip saddr @outbound ip daddr != ${subnet} masquerade`,
    `  }`,
    `}`,
    '',
  ].join('\n');
}

/** The addresses in the table's @outbound set, from `nft list table` output. */
export function outboundElements(tableText: string): string[] {
  const set = /set outbound \{[^}]*?elements = \{([^}]*)\}/s.exec(tableText);
  return set ? set[1]!.split(',').map((e) => e.trim()).filter(Boolean) : [];
}
