/**
 * Frames of the envbox-guest protocol (native/envbox-guest.c), both directions. Pure: bytes in, values out.
 *
 *   u32 len (big-endian, bytes after this field) | u8 op | u32 id | payload
 *
 * Strings are u16 length + UTF-8 bytes, integers big-endian. Requests name a folder root by its index in
 * the helper's command line and a path relative to it. Replies are OK (payload per request) or ERR
 * (i32 errno, string message), carrying the request's id.
 */

export const PROTO_VERSION = 1;
/** The largest `len` either side accepts: 1 MiB of data plus room for the header fields. */
export const MAX_FRAME = 1024 * 1024 + 64 * 1024;
/** The most file data one WRITE or APPEND frame carries. */
export const MAX_CHUNK = 1024 * 1024;
/** Paths and strings longer than this (bytes) are refused by the helper. */
export const MAX_PATH_BYTES = 4095;
/** Bit 31 of a LIST reply's count: another OK frame with the same id follows. */
export const LIST_MORE = 0x8000_0000;

export const Op = {
  HELLO: 0x01,
  EVENTS: 0x02,
  WRITE: 0x10,
  APPEND: 0x11,
  MKDIR: 0x12,
  SYMLINK: 0x13,
  REMOVE: 0x14,
  RENAME: 0x15,
  CHMOD: 0x16,
  WRITE_T: 0x18,
  LIST: 0x17,
  PING: 0x20,
  OK: 0x80,
  ERR: 0x81,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/** Kinds of host change in an EVENTS batch (mount mode). */
export const EventKind = {
  MODIFY: 1,
  CREATE: 2,
  MKDIR: 3,
  DELETE: 4,
  RENAME: 5,
  /** Something inside the folder changed, too many to list. */
  RESCAN: 6,
} as const;
export type EventKindCode = (typeof EventKind)[keyof typeof EventKind];

export type GuestEvent =
  | { kind: Exclude<EventKindCode, typeof EventKind.RENAME>; path: string }
  | { kind: typeof EventKind.RENAME; path: string; to: string };

/** HELLO's features bits. */
export const Feature = { WATCH: 1, /** WRITE_T: a WRITE that also sets the file's mtime. */ MTIME: 2 } as const;

export interface Hello {
  version: number;
  features: number;
  machine: string;
}

export type EntryType = 'f' | 'd' | 'l';
export interface ListEntry {
  type: EntryType;
  mode: number;
  size: bigint;
  mtimeNs: bigint;
  path: string;
}

export interface Frame {
  op: number;
  id: number;
  payload: Buffer;
}

/** A protocol violation (bad frame or field); the connection cannot continue after one. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

// ---------- encoding ----------

class Writer {
  private parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${v} is not a u64`);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }
  str(s: string, what: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > MAX_PATH_BYTES) throw new RangeError(`${what} is ${b.length} bytes; envbox-guest takes at most ${MAX_PATH_BYTES}`);
    if (b.includes(0)) throw new RangeError(`${what} contains a NUL byte`);
    return this.u16(b.length).bytes(b);
  }
  bytes(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** One whole frame: length prefix, op, id and payload. */
export function encodeFrame(op: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const len = 5 + payload.length;
  if (len > MAX_FRAME) throw new RangeError(`frame of ${len} bytes is over the ${MAX_FRAME}-byte limit`);
  const head = Buffer.alloc(9);
  head.writeUInt32BE(len, 0);
  head.writeUInt8(op, 4);
  head.writeUInt32BE(id >>> 0, 5);
  return Buffer.concat([head, payload]);
}

/** A root index is one byte. */
function root(r: number): number {
  if (!Number.isInteger(r) || r < 0 || r > 255) throw new RangeError(`folder root index ${r} is not 0..255`);
  return r;
}

const req = () => new Writer();

export const encode = {
  hello: (id: number, version = PROTO_VERSION) => encodeFrame(Op.HELLO, id, req().u16(version).done()),
  events(id: number, rootIndex: number, batch: readonly GuestEvent[]): Buffer {
    if (batch.length > 0xffff) throw new RangeError(`an EVENTS batch holds at most 65535 entries, not ${batch.length}`);
    const w = req().u8(root(rootIndex)).u16(batch.length);
    for (const e of batch) {
      w.u8(e.kind).str(e.path, 'event path');
      if (e.kind === EventKind.RENAME) w.str(e.to, 'rename target');
    }
    return encodeFrame(Op.EVENTS, id, w.done());
  },
  /** WRITE, or WRITE_T when `mtimeNs` is given (the guest then sets the file's mtime to it). */
  write(id: number, rootIndex: number, path: string, mode: number, more: boolean, data: Buffer, mtimeNs?: bigint): Buffer {
    if (data.length > MAX_CHUNK) throw new RangeError(`a WRITE chunk is at most ${MAX_CHUNK} bytes`);
    const w = req().u8(root(rootIndex)).str(path, 'path').u32(mode);
    if (mtimeNs !== undefined) w.u64(mtimeNs);
    return encodeFrame(mtimeNs === undefined ? Op.WRITE : Op.WRITE_T, id, w.u8(more ? 1 : 0).bytes(data).done());
  },
  append(id: number, more: boolean, data: Buffer): Buffer {
    if (data.length > MAX_CHUNK) throw new RangeError(`an APPEND chunk is at most ${MAX_CHUNK} bytes`);
    return encodeFrame(Op.APPEND, id, req().u8(more ? 1 : 0).bytes(data).done());
  },
  mkdir: (id: number, rootIndex: number, path: string, mode: number) =>
    encodeFrame(Op.MKDIR, id, req().u8(root(rootIndex)).str(path, 'path').u32(mode).done()),
  symlink: (id: number, rootIndex: number, path: string, target: string) =>
    encodeFrame(Op.SYMLINK, id, req().u8(root(rootIndex)).str(path, 'path').str(target, 'symlink target').done()),
  remove: (id: number, rootIndex: number, path: string) => encodeFrame(Op.REMOVE, id, req().u8(root(rootIndex)).str(path, 'path').done()),
  rename: (id: number, rootIndex: number, from: string, to: string) =>
    encodeFrame(Op.RENAME, id, req().u8(root(rootIndex)).str(from, 'path').str(to, 'rename target').done()),
  chmod: (id: number, rootIndex: number, path: string, mode: number) =>
    encodeFrame(Op.CHMOD, id, req().u8(root(rootIndex)).str(path, 'path').u32(mode).done()),
  list: (id: number, rootIndex: number, path: string) => encodeFrame(Op.LIST, id, req().u8(root(rootIndex)).str(path, 'path').done()),
  ping: (id: number) => encodeFrame(Op.PING, id),
  /** Replies, as the helper writes them (used by tests and fakes). */
  ok: (id: number, payload: Buffer = Buffer.alloc(0)) => encodeFrame(Op.OK, id, payload),
  err: (id: number, errno: number, message: string) => {
    const w = req();
    const b = Buffer.alloc(4);
    b.writeInt32BE(errno);
    return encodeFrame(Op.ERR, id, w.bytes(b).str(message.slice(0, 1000), 'message').done());
  },
};

// ---------- decoding ----------

/** Reads fields off a payload; running past its end is a ProtocolError. */
export class Reader {
  private off = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}
  private need(n: number): number {
    if (this.buf.length - this.off < n) throw new ProtocolError(`${this.what}: truncated at byte ${this.off}`);
    const at = this.off;
    this.off += n;
    return at;
  }
  u8 = () => this.buf.readUInt8(this.need(1));
  u16 = () => this.buf.readUInt16BE(this.need(2));
  u32 = () => this.buf.readUInt32BE(this.need(4));
  i32 = () => this.buf.readInt32BE(this.need(4));
  u64 = () => this.buf.readBigUInt64BE(this.need(8));
  str = () => {
    const n = this.u16();
    const at = this.need(n);
    return this.buf.toString('utf8', at, at + n);
  };
  rest = () => this.buf.subarray(this.need(0));
  end(): void {
    if (this.off !== this.buf.length) throw new ProtocolError(`${this.what}: ${this.buf.length - this.off} unexpected bytes at the end`);
  }
}

/**
 * Splits a byte stream into frames. push() takes any chunking of the stream and returns the frames it
 * completed; a length outside 5..MAX_FRAME is a ProtocolError (the stream is out of step).
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Frame[] = [];
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32BE(off);
      if (len < 5 || len > MAX_FRAME) throw new ProtocolError(`frame length ${len} is outside 5..${MAX_FRAME}`);
      if (this.buf.length - off - 4 < len) break;
      const op = this.buf.readUInt8(off + 4);
      const id = this.buf.readUInt32BE(off + 5);
      frames.push({ op, id, payload: Buffer.from(this.buf.subarray(off + 9, off + 4 + len)) });
      off += 4 + len;
    }
    this.buf = this.buf.subarray(off);
    return frames;
  }
  /** Bytes of an incomplete frame still waiting. */
  get pending(): number {
    return this.buf.length;
  }
}

export const decode = {
  hello(payload: Buffer): Hello {
    const r = new Reader(payload, 'HELLO reply');
    const hello = { version: r.u16(), features: r.u32(), machine: r.str() };
    r.end();
    return hello;
  },
  eventsFailed(payload: Buffer): number {
    const r = new Reader(payload, 'EVENTS reply');
    const failed = r.u16();
    r.end();
    return failed;
  },
  /** One LIST reply frame: its entries and whether another frame with the same id follows. */
  list(payload: Buffer): { entries: ListEntry[]; more: boolean } {
    const r = new Reader(payload, 'LIST reply');
    const raw = r.u32();
    const count = raw & ~LIST_MORE;
    const entries: ListEntry[] = [];
    for (let i = 0; i < count; i++) {
      const t = String.fromCharCode(r.u8());
      if (t !== 'f' && t !== 'd' && t !== 'l') throw new ProtocolError(`LIST reply: entry ${i} has unknown type ${JSON.stringify(t)}`);
      entries.push({ type: t, mode: r.u32(), size: r.u64(), mtimeNs: r.u64(), path: r.str() });
    }
    r.end();
    return { entries, more: (raw & LIST_MORE) !== 0 };
  },
  err(payload: Buffer): { errno: number; message: string } {
    const r = new Reader(payload, 'ERR reply');
    const e = { errno: r.i32(), message: r.str() };
    r.end();
    return e;
  },
  /** Requests, as the helper reads them (used by tests and fakes). */
  request(frame: Frame): Record<string, unknown> {
    const r = new Reader(frame.payload, `request 0x${frame.op.toString(16)}`);
    let out: Record<string, unknown>;
    switch (frame.op) {
      case Op.HELLO:
        out = { version: r.u16() };
        break;
      case Op.EVENTS: {
        const rootIndex = r.u8();
        const count = r.u16();
        const batch: GuestEvent[] = [];
        for (let i = 0; i < count; i++) {
          const kind = r.u8() as EventKindCode;
          const path = r.str();
          batch.push(kind === EventKind.RENAME ? { kind, path, to: r.str() } : { kind, path });
        }
        out = { root: rootIndex, batch };
        break;
      }
      case Op.WRITE:
        return { root: r.u8(), path: r.str(), mode: r.u32(), more: r.u8() === 1, data: r.rest() };
      case Op.WRITE_T:
        return { root: r.u8(), path: r.str(), mode: r.u32(), mtimeNs: r.u64(), more: r.u8() === 1, data: r.rest() };
      case Op.APPEND:
        return { more: r.u8() === 1, data: r.rest() };
      case Op.MKDIR:
      case Op.CHMOD:
        out = { root: r.u8(), path: r.str(), mode: r.u32() };
        break;
      case Op.SYMLINK:
        out = { root: r.u8(), path: r.str(), target: r.str() };
        break;
      case Op.REMOVE:
      case Op.LIST:
        out = { root: r.u8(), path: r.str() };
        break;
      case Op.RENAME:
        out = { root: r.u8(), path: r.str(), to: r.str() };
        break;
      case Op.PING:
        out = {};
        break;
      default:
        throw new ProtocolError(`unknown request op 0x${frame.op.toString(16)}`);
    }
    r.end();
    return out;
  },
};

/** Linux errno names for the values the helper replies with (ERR frames). */
const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 5: 'EIO', 9: 'EBADF', 12: 'ENOMEM', 13: 'EACCES', 16: 'EBUSY', 17: 'EEXIST', 18: 'EXDEV',
  20: 'ENOTDIR', 21: 'EISDIR', 22: 'EINVAL', 24: 'EMFILE', 27: 'EFBIG', 28: 'ENOSPC', 30: 'EROFS', 36: 'ENAMETOOLONG',
  38: 'ENOSYS', 39: 'ENOTEMPTY', 40: 'ELOOP', 71: 'EPROTO', 95: 'EOPNOTSUPP', 122: 'EDQUOT',
};
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E${errno}`;
}
