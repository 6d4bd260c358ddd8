/**
 * How the proxy turns a name into guest addresses. Names that mean "this guest" (localhost,
 * *.localhost, the env's name and its subdomains) are the guest's loopback: that is where a dev
 * server listens, and a browser pointed at http://webapp:8000 should reach it. Every other name is
 * looked up inside the guest, so its /etc/hosts and resolver apply, never the host's.
 */
import { isIP } from 'node:net';
import { shellQuote } from '../ssh/exec.js';
import { DialError } from './socks/dial.js';

export type NameKind = 'loopback' | 'lookup';

export function guestNameKind(name: string, envName: string): NameKind {
  const bare = name.toLowerCase().replace(/\.$/, '');
  const env = envName.toLowerCase();
  const under = (domain: string) => bare === domain || bare.endsWith(`.${domain}`);
  return under('localhost') || under(env) ? 'loopback' : 'lookup';
}

/** The guest's loopback, IPv4 first: most dev servers bind 127.0.0.1, some only ::1. */
export const GUEST_LOOPBACK = ['127.0.0.1', '::1'];

/**
 * Addresses from `getent ahosts NAME` (what getaddrinfo returns in the guest: /etc/hosts, then DNS),
 * in its order, each once. Lines are `ADDRESS  STREAM|DGRAM|RAW  [canonical name]`.
 */
export function parseGetent(stdout: string): string[] {
  const seen = new Set<string>();
  for (const line of stdout.split('\n')) {
    const address = line.trim().split(/\s+/)[0] ?? '';
    if (isIP(address)) seen.add(address);
  }
  return [...seen];
}

export type GuestExec = (command: string) => Promise<{ code: number; stdout: string }>;

// Long enough that a page load asks once, short enough that an /etc/hosts edit shows promptly.
const POSITIVE_TTL_MS = 5_000;
const NEGATIVE_TTL_MS = 1_000;
// getent's "key not found" status.
const NOT_FOUND = 2;

export class GuestResolver {
  private readonly cache = new Map<string, { until: number; addresses: Promise<string[]> }>();

  constructor(private readonly exec: GuestExec) {}

  resolve(name: string): Promise<string[]> {
    const key = name.toLowerCase().replace(/\.$/, '');
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.addresses;
    const addresses = this.lookup(key);
    const entry = { until: Date.now() + POSITIVE_TTL_MS, addresses };
    this.cache.set(key, entry);
    addresses.catch(() => (entry.until = Date.now() + NEGATIVE_TTL_MS));
    if (this.cache.size > 256) this.cache.delete(this.cache.keys().next().value!);
    return addresses;
  }

  private async lookup(name: string): Promise<string[]> {
    const { code, stdout } = await this.exec(`getent ahosts ${shellQuote([name])}`);
    const addresses = code === 0 ? parseGetent(stdout) : [];
    if (addresses.length > 0) return addresses;
    if (code === NOT_FOUND || code === 0) throw new DialError('dns', `${name} is not known in the guest`);
    throw new DialError('dns', `looking up ${name} in the guest failed (getent exited ${code})`);
  }
}
