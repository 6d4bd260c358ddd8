/**
 * The wire format spoken with native/nsrelay over its unix socket, as pure functions
 * (native/nsrelay.c has the same description):
 *
 *   request  "TCP <host> <port>[ <timeout-ms>]\n" | "UDP <host> <port>\n"   (at most 255 bytes)
 *   reply    "OK\n" | "ERR <CODE> <text>\n"      CODE: an errno name, BADREQ or NOTLITERAL
 *   then     TCP: raw bytes both ways, half-close passed through
 *            UDP: datagrams both ways, each a 2-byte big-endian length + payload
 *
 * The relay never resolves names (the host's resolver is the wrong one): host is an IP
 * literal or `localhost`, and the caller resolves anything else inside the guest.
 */
import { isIP } from 'node:net';
import { DialError, type DialErrorKind } from '../agent/socks/dial.js';

export const RELAY_PROTOCOL = 1;
export const READY_LINE = `READY ${RELAY_PROTOCOL}`;
export const MAX_REQUEST_BYTES = 255;
export const MAX_REPLY_BYTES = 512;
export const MAX_DATAGRAM_BYTES = 0xffff;

export type RelayProto = 'TCP' | 'UDP';

export type RelayReply = { ok: true } | { ok: false; code: string; message: string };

/** The host as the relay takes it, or undefined when it is a name the caller must resolve. */
export function relayHost(host: string): string | undefined {
  if (host.toLowerCase() === 'localhost') return 'localhost';
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (/[\s\x00-\x1f\x7f]/.test(bare)) return undefined;
  const kind = isIP(bare);
  if (kind === 4 && bare === host) return bare;
  return kind === 6 ? bare : undefined;
}

export function encodeRequest(proto: RelayProto, host: string, port: number, timeoutMs?: number): Buffer {
  const relay = relayHost(host);
  if (relay === undefined) throw new DialError('dns', `${host} is not an IP address; resolve it inside the guest first`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new DialError('failure', `port ${port} is out of range`);
  let line = `${proto} ${relay} ${port}`;
  if (proto === 'TCP' && timeoutMs !== undefined) line += ` ${Math.min(600_000, Math.max(1, Math.ceil(timeoutMs)))}`;
  if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) throw new DialError('failure', `request for ${host} is too long`);
  return Buffer.from(`${line}\n`);
}

/** The reply line without its "\n". */
export function parseReply(line: string): RelayReply {
  if (line === 'OK') return { ok: true };
  const match = /^ERR ([A-Z0-9]+) ?(.*)$/.exec(line);
  if (!match) return { ok: false, code: 'BADREPLY', message: `unexpected reply from the relay: ${JSON.stringify(line.slice(0, 80))}` };
  return { ok: false, code: match[1]!, message: match[2] || match[1]! };
}

const CODE_KIND: Record<string, DialErrorKind> = {
  ECONNREFUSED: 'refused',
  EHOSTUNREACH: 'unreachable',
  EHOSTDOWN: 'unreachable',
  ENETUNREACH: 'network',
  ENETDOWN: 'network',
  EADDRNOTAVAIL: 'network',
  ETIMEDOUT: 'timeout',
  NOTLITERAL: 'dns',
};

export function dialKindFor(code: string): DialErrorKind {
  return CODE_KIND[code] ?? 'failure';
}

export function dialErrorFor(reply: { code: string; message: string }, target: string): DialError {
  return new DialError(dialKindFor(reply.code), `${target} inside the guest: ${reply.message} (${reply.code})`);
}

export function encodeDatagram(msg: Buffer): Buffer {
  if (msg.length > MAX_DATAGRAM_BYTES) throw new RangeError(`datagram of ${msg.length} bytes is over ${MAX_DATAGRAM_BYTES}`);
  const frame = Buffer.allocUnsafe(2 + msg.length);
  frame.writeUInt16BE(msg.length, 0);
  msg.copy(frame, 2);
  return frame;
}

/** Splits the relay's byte stream back into datagrams, whatever the read boundaries were. */
export class DatagramDecoder {
  private parts: Buffer[] = [];
  private buffered = 0;
  // Bytes the next datagram needs in all; joining parts before that would be wasted work.
  private needed = 2;

  push(chunk: Buffer): Buffer[] {
    this.parts.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < this.needed) return [];
    let buf = this.parts.length === 1 ? chunk : Buffer.concat(this.parts, this.buffered);
    const out: Buffer[] = [];
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const end = 2 + buf.readUInt16BE(0);
      out.push(Buffer.from(buf.subarray(2, end)));
      buf = buf.subarray(end);
    }
    this.parts = buf.length > 0 ? [buf] : [];
    this.buffered = buf.length;
    this.needed = buf.length >= 2 ? 2 + buf.readUInt16BE(0) : 2;
    return out;
  }
}
