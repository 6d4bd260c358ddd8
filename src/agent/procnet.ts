/**
 * The kernel's socket tables (/proc/net/tcp, tcp6, udp, udp6) as data. The agent reads the guest's
 * tables to see what it listens on, and the host's to find who holds a port. Pure: the caller
 * reads the files (locally, through /proc/<pid>/net for a container, or over SSH).
 *
 *   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
 *    0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 ...
 *
 * Addresses are 32-bit words printed in the host's byte order; ports are big-endian hex.
 */
import { endianness } from 'node:os';
import { formatIPv6 } from './socks/protocol.js';

export interface SocketEntry {
  protocol: 'tcp' | 'udp';
  ip: string;
  port: number;
  /** The kernel's state number: 0x0A is TCP LISTEN; an unconnected UDP socket shows 0x07. */
  state: number;
  uid: number;
  inode: number;
}

export const TCP_LISTEN = 0x0a;
export const UDP_UNCONNECTED = 0x07;

export function parseProcNet(text: string, protocol: 'tcp' | 'udp', byteOrder: 'LE' | 'BE' = endianness()): SocketEntry[] {
  const out: SocketEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (!/^\d+:$/.test(fields[0] ?? '')) continue; // the header, or a blank line
    const [address, portHex] = (fields[1] ?? '').split(':');
    const ip = address ? decodeAddress(address, byteOrder) : undefined;
    const port = Number.parseInt(portHex ?? '', 16);
    const state = Number.parseInt(fields[3] ?? '', 16);
    if (ip === undefined || !Number.isInteger(port) || Number.isNaN(state)) continue;
    out.push({ protocol, ip, port, state, uid: Number(fields[7] ?? -1), inode: Number(fields[9] ?? 0) });
  }
  return out;
}

/**
 * The lines of a /proc/net/tcp{,6} table (as bytes) whose socket is in `state` (LISTEN by default).
 * A busy guest's table is mostly connections and TIME_WAIT: skipping those without making strings
 * keeps a poll's garbage to the few lines that matter. Lines must be whole (a table read in full).
 */
export function linesInState(table: Buffer, state = TCP_LISTEN): string[] {
  const want = state.toString(16).toUpperCase().padStart(2, '0');
  const [hi, lo] = [want.charCodeAt(0), want.charCodeAt(1)];
  const out: string[] = [];
  for (let start = 0; start < table.length; ) {
    let end = table.indexOf(0x0a, start);
    if (end < 0) end = table.length;
    // "  sl: local rem st ...": the state is the fourth field.
    let at = start;
    for (let field = 0; field < 3 && at < end; field++) {
      while (at < end && table[at] === 0x20) at++;
      while (at < end && table[at] !== 0x20) at++;
    }
    while (at < end && table[at] === 0x20) at++;
    if (at + 2 < end && table[at] === hi && table[at + 1] === lo && table[at + 2] === 0x20) out.push(table.toString('latin1', start, end));
    start = end + 1;
  }
  return out;
}

/** Sockets that accept new peers: TCP in LISTEN, UDP bound but not connected. */
export function listening(entries: SocketEntry[]): SocketEntry[] {
  return entries.filter((e) => (e.protocol === 'tcp' ? e.state === TCP_LISTEN : e.state === UDP_UNCONNECTED && e.port !== 0));
}

function decodeAddress(hex: string, byteOrder: 'LE' | 'BE'): string | undefined {
  if (!/^[0-9A-Fa-f]+$/.test(hex) || (hex.length !== 8 && hex.length !== 32)) return undefined;
  const bytes = Buffer.from(hex, 'hex');
  if (byteOrder === 'LE') for (let i = 0; i < bytes.length; i += 4) bytes.subarray(i, i + 4).reverse();
  if (bytes.length === 4) return bytes.join('.');
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? `::ffff:${bytes.subarray(12).join('.')}` : formatIPv6(bytes);
}

/** The address family's "any" and loopback, and whether two bind addresses would collide. */
export function isWildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

export function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip.startsWith('::ffff:127.') || ip === 'localhost';
}

/**
 * Would binding `want` fail because `held` is bound to the same port? Equal addresses collide, a
 * wildcard collides with its family, and `::` (dual-stack, as Linux binds it by default) with both.
 */
export function bindOverlaps(held: string, want: string): boolean {
  const a = unmap(held);
  const b = unmap(want);
  if (a === b) return true;
  const v6 = (ip: string) => ip.includes(':');
  if (a === '::' || b === '::') return true;
  if (a === '0.0.0.0') return !v6(b);
  if (b === '0.0.0.0') return !v6(a);
  return false;
}

function unmap(ip: string): string {
  const bare = ip === 'localhost' ? '127.0.0.1' : ip;
  return bare.startsWith('::ffff:') && bare.includes('.') ? bare.slice(7) : bare;
}
