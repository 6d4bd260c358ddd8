/**
 * SOCKS5 wire format (RFC 1928) and username/password sub-negotiation (RFC 1929), as pure
 * functions over the bytes received so far. Each parser answers "need more bytes", "reject"
 * or "parsed, consuming n bytes", so the server never assumes one TCP read is one message
 * and whatever follows a message (pipelined requests, early payload) stays in the buffer.
 */
import { isIP, isIPv4, isIPv6 } from 'node:net';

export const SOCKS_VERSION = 0x05;
export const AUTH_VERSION = 0x01;
export const METHOD_NO_AUTH = 0x00;
export const METHOD_USER_PASS = 0x02;
export const METHOD_NONE_ACCEPTABLE = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

export const Reply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;
export type ReplyCode = (typeof Reply)[keyof typeof Reply];

export interface Target {
  host: string;
  port: number;
  kind: 'ipv4' | 'ipv6' | 'domain';
}

export type Parsed<T> =
  | { status: 'more' }
  | { status: 'reject'; reason: string; reply?: ReplyCode }
  | { status: 'ok'; value: T; size: number };

const MORE = { status: 'more' } as const;

export function parseGreeting(buf: Buffer): Parsed<Uint8Array> {
  if (buf.length < 1) return MORE;
  // 0x04 is SOCKS4: close rather than answer in a protocol we do not speak.
  if (buf[0] !== SOCKS_VERSION) return { status: 'reject', reason: `version byte ${buf[0]}` };
  if (buf.length < 2) return MORE;
  const count = buf[1]!;
  if (count === 0) return { status: 'reject', reason: 'greeting offers no methods' };
  if (buf.length < 2 + count) return MORE;
  return { status: 'ok', value: buf.subarray(2, 2 + count), size: 2 + count };
}

export function parseCredentials(buf: Buffer): Parsed<{ username: Buffer; password: Buffer }> {
  if (buf.length < 1) return MORE;
  if (buf[0] !== AUTH_VERSION) return { status: 'reject', reason: `auth version byte ${buf[0]}` };
  if (buf.length < 2) return MORE;
  const ulen = buf[1]!;
  if (buf.length < 3 + ulen) return MORE;
  const plen = buf[2 + ulen]!;
  const size = 3 + ulen + plen;
  if (buf.length < size) return MORE;
  return {
    status: 'ok',
    value: { username: buf.subarray(2, 2 + ulen), password: buf.subarray(3 + ulen, size) },
    size,
  };
}

// Letters, digits, '-', '_' and dots: what a guest resolver can look up. Anything else
// (spaces, control bytes, '%' scope ids) is refused before it reaches a dialer.
const HOST_NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/;

export function parseRequest(buf: Buffer): Parsed<Target> {
  if (buf.length < 4) return MORE;
  if (buf[0] !== SOCKS_VERSION) {
    return { status: 'reject', reason: `request version byte ${buf[0]}`, reply: Reply.generalFailure };
  }
  if (buf[1] !== CMD_CONNECT) {
    return { status: 'reject', reason: `command ${buf[1]}`, reply: Reply.commandNotSupported };
  }
  const atyp = buf[3];
  let addressEnd: number;
  if (atyp === ATYP_IPV4) addressEnd = 8;
  else if (atyp === ATYP_IPV6) addressEnd = 20;
  else if (atyp === ATYP_DOMAIN) {
    if (buf.length < 5) return MORE;
    addressEnd = 5 + buf[4]!;
  } else {
    return { status: 'reject', reason: `address type ${atyp}`, reply: Reply.addressTypeNotSupported };
  }
  const size = addressEnd + 2;
  if (buf.length < size) return MORE;
  const port = buf.readUInt16BE(addressEnd);
  if (atyp === ATYP_IPV4) {
    return { status: 'ok', value: { host: buf.subarray(4, 8).join('.'), port, kind: 'ipv4' }, size };
  }
  if (atyp === ATYP_IPV6) {
    return { status: 'ok', value: { host: formatIPv6(buf.subarray(4, 20)), port, kind: 'ipv6' }, size };
  }
  const name = buf.toString('latin1', 5, addressEnd);
  // Some clients put an address literal in the domain field; tell the dialer what it really is.
  const literal = isIP(name);
  if (literal === 4) return { status: 'ok', value: { host: name, port, kind: 'ipv4' }, size };
  if (literal === 6) return { status: 'ok', value: { host: name, port, kind: 'ipv6' }, size };
  if (!HOST_NAME.test(name)) {
    return { status: 'reject', reason: 'malformed domain name', reply: Reply.hostUnreachable };
  }
  return { status: 'ok', value: { host: name, port, kind: 'domain' }, size };
}

/** VER REP RSV ATYP BND.ADDR BND.PORT; an address that is not an IP literal is sent as 0.0.0.0:0. */
export function encodeReply(code: ReplyCode, address?: string, port = 0): Buffer {
  const bare = address?.replace(/%.*$/, '');
  let atyp = ATYP_IPV4;
  let bytes: Uint8Array = new Uint8Array(4);
  if (bare !== undefined && isIPv4(bare)) bytes = Uint8Array.from(bare.split('.').map(Number));
  else if (bare !== undefined && isIPv6(bare)) {
    atyp = ATYP_IPV6;
    bytes = parseIPv6(bare);
  } else port = 0;
  const out = Buffer.alloc(6 + bytes.length);
  out.set([SOCKS_VERSION, code, 0x00, atyp]);
  out.set(bytes, 4);
  out.writeUInt16BE(port, 4 + bytes.length);
  return out;
}

/** RFC 5952 text: lower-case hex, the longest run of two or more zero groups as '::'. */
export function formatIPv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** Sixteen bytes of a valid IPv6 literal (callers check with net.isIPv6 first). */
export function parseIPv6(text: string): Uint8Array {
  const toGroups = (part: string): number[] => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a, b, c, d] = piece.split('.').map(Number) as [number, number, number, number];
        groups.push((a << 8) | b, (c << 8) | d);
      } else groups.push(parseInt(piece, 16));
    }
    return groups;
  };
  const [head, tail] = text.split('::') as [string, string | undefined];
  const front = toGroups(head);
  const back = tail === undefined ? [] : toGroups(tail);
  const groups = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => bytes.set([g >> 8, g & 0xff], i * 2));
  return bytes;
}
