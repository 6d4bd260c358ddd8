/**
 * Auto-detected ports as pure rules: which of the guest's listening TCP sockets get a forward, and
 * what changes between two polls. The watcher (portwatch.ts) only reads tables and applies the diff.
 */
import type { PortRange } from '../envfile/defaults.js';
import { isLoopback, isWildcard, TCP_LISTEN, type SocketEntry } from './procnet.js';

export interface AutoPortRules {
  /** Envfile `auto_ports.only`: when non-empty, nothing outside these is forwarded. */
  only: PortRange[];
  ignore: PortRange[];
  /** Never forwarded: sshd, ports a static or reverse forward already owns, the agent's own. */
  exclude: ReadonlySet<number>;
}

/** Guest port → the guest address a forward dials. */
export type AutoPorts = ReadonlyMap<number, string>;

export const SSH_PORT = 22;
// Below this a host bind needs root and meets the host's own system services (DNS on 53, mail on
// 25): a guest's system daemons are not what auto-forwarding is for. `only` can still name them.
const FIRST_UNPRIVILEGED = 1024;

const inRanges = (port: number, ranges: PortRange[]) => ranges.some((r) => port >= r.from && port <= r.to);

export function autoForwardable(port: number, rules: AutoPortRules): boolean {
  if (port === SSH_PORT || rules.exclude.has(port) || inRanges(port, rules.ignore)) return false;
  if (rules.only.length > 0) return inRanges(port, rules.only);
  return port >= FIRST_UNPRIVILEGED;
}

/**
 * The forwards the guest's listeners call for. A port held on loopback or a wildcard is dialed on
 * 127.0.0.1 (::1 when only IPv6 has it); one bound to a single other address is dialed there.
 */
export function wantedAutoPorts(entries: SocketEntry[], rules: AutoPortRules): Map<number, string> {
  const byPort = new Map<number, string[]>();
  for (const e of entries) {
    if (e.protocol !== 'tcp' || e.state !== TCP_LISTEN || !autoForwardable(e.port, rules)) continue;
    byPort.set(e.port, [...(byPort.get(e.port) ?? []), e.ip]);
  }
  const out = new Map<number, string>();
  for (const [port, ips] of byPort) out.set(port, dialAddress(ips));
  return out;
}

function dialAddress(ips: string[]): string {
  const v6 = (ip: string) => ip.includes(':') && !ip.startsWith('::ffff:');
  const local = ips.filter((ip) => isLoopback(ip) || isWildcard(ip));
  if (local.some((ip) => !v6(ip) || ip === '::')) return '127.0.0.1';
  if (local.length > 0) return '::1';
  const plain = ips.map((ip) => (ip.startsWith('::ffff:') ? ip.slice(7) : ip));
  return plain.find((ip) => !ip.includes(':')) ?? plain[0]!;
}

export interface AutoPortDiff {
  add: { port: number; guestIp: string }[];
  remove: number[];
}

/** What to start and stop to go from `current` to `wanted`; a port whose address changed is both. */
export function diffAutoPorts(current: AutoPorts, wanted: AutoPorts): AutoPortDiff {
  const add: AutoPortDiff['add'] = [];
  const remove: number[] = [];
  for (const [port, ip] of current) if (wanted.get(port) !== ip) remove.push(port);
  for (const [port, guestIp] of wanted) if (current.get(port) !== guestIp) add.push({ port, guestIp });
  return { add: add.sort((a, b) => a.port - b.port), remove: remove.sort((a, b) => a - b) };
}
