import { describe, expect, it } from 'vitest';
import {
  decode,
  encode,
  encodeFrame,
  errnoName,
  EventKind,
  FrameDecoder,
  LIST_MORE,
  MAX_CHUNK,
  MAX_FRAME,
  Op,
  ProtocolError,
  type Frame,
} from '../../../src/guest/protocol.js';

const hex = (b: Buffer) => b.toString('hex');
/** The frame's payload, checked against its header. */
function payloadOf(frame: Buffer, op: number, id: number): string {
  expect(frame.readUInt32BE(0)).toBe(frame.length - 4);
  expect(frame[4]).toBe(op);
  expect(frame.readUInt32BE(5)).toBe(id);
  return hex(frame.subarray(9));
}

describe('encoding requests', () => {
  it.each([
    ['HELLO', encode.hello(1), Op.HELLO, 1, '0001'],
    ['PING', encode.ping(0xfffffffe), Op.PING, 0xfffffffe, ''],
    ['MKDIR', encode.mkdir(2, 3, 'a/b', 0o755), Op.MKDIR, 2, '03' + '0003' + hex(Buffer.from('a/b')) + '000001ed'],
    ['CHMOD', encode.chmod(3, 0, 'x', 0o4755), Op.CHMOD, 3, '00' + '0001' + '78' + '000009ed'],
    ['REMOVE', encode.remove(4, 255, 'é'), Op.REMOVE, 4, 'ff' + '0002' + 'c3a9'],
    ['LIST of the root', encode.list(5, 0, ''), Op.LIST, 5, '00' + '0000'],
    ['SYMLINK', encode.symlink(6, 1, 'l', '../t'), Op.SYMLINK, 6, '01' + '0001' + '6c' + '0004' + hex(Buffer.from('../t'))],
    ['RENAME', encode.rename(7, 0, 'a', 'b'), Op.RENAME, 7, '00' + '0001' + '61' + '0001' + '62'],
    ['WRITE', encode.write(8, 0, 'f', 0o644, true, Buffer.from('hi')), Op.WRITE, 8, '00' + '0001' + '66' + '000001a4' + '01' + '6869'],
    ['WRITE_T (with an mtime)', encode.write(9, 0, 'f', 0o644, false, Buffer.from('hi'), 0x0102030405060708n), Op.WRITE_T, 9, '00' + '0001' + '66' + '000001a4' + '0102030405060708' + '00' + '6869'],
    ['APPEND', encode.append(8, false, Buffer.from('!')), Op.APPEND, 8, '00' + '21'],
  ])('%s', (_name, frame, op, id, payload) => {
    expect(payloadOf(frame, op, id)).toBe(payload);
  });

  it('EVENTS: root, count, then kind and path (and the target of a rename)', () => {
    const frame = encode.events(9, 2, [
      { kind: EventKind.MODIFY, path: 'm' },
      { kind: EventKind.RENAME, path: 'a', to: 'b/c' },
      { kind: EventKind.RESCAN, path: '' },
    ]);
    expect(payloadOf(frame, Op.EVENTS, 9)).toBe('02' + '0003' + '01' + '0001' + '6d' + '05' + '0001' + '61' + '0003' + hex(Buffer.from('b/c')) + '06' + '0000');
  });

  it.each([
    ['a path over 4095 bytes', () => encode.remove(1, 0, 'x'.repeat(4096)), /4096 bytes; envbox-guest takes at most 4095/],
    ['a multi-byte path over 4095 bytes', () => encode.remove(1, 0, 'é'.repeat(2048)), /4096 bytes/],
    ['a NUL in a path', () => encode.mkdir(1, 0, 'a\0b', 0o755), /NUL/],
    ['a NUL in a symlink target', () => encode.symlink(1, 0, 'l', 't\0'), /symlink target contains a NUL/],
    ['a root index over 255', () => encode.list(1, 256, ''), /root index 256/],
    ['a negative root index', () => encode.list(1, -1, ''), /root index -1/],
    ['a chunk over 1 MiB', () => encode.write(1, 0, 'f', 0o644, false, Buffer.alloc(MAX_CHUNK + 1)), /at most 1048576/],
    ['an APPEND over 1 MiB', () => encode.append(1, false, Buffer.alloc(MAX_CHUNK + 1)), /at most 1048576/],
    ['an EVENTS batch over 65535', () => encode.events(1, 0, Array.from({ length: 65536 }, () => ({ kind: EventKind.MODIFY, path: 'a' }))), /at most 65535/],
    ['a frame over the limit', () => encodeFrame(Op.WRITE, 1, Buffer.alloc(MAX_FRAME)), /over the 1114112-byte limit/],
  ])('refuses %s', (_what, fn, message) => {
    expect(fn).toThrow(RangeError);
    expect(fn).toThrow(message);
  });

  it('a full 1 MiB chunk with the longest path still fits in a frame', () => {
    expect(encode.write(1, 0, 'p'.repeat(4095), 0o644, true, Buffer.alloc(MAX_CHUNK)).length).toBeLessThanOrEqual(MAX_FRAME + 4);
  });
});

describe('decoding requests (as the helper reads them)', () => {
  const split = (frame: Buffer): Frame => new FrameDecoder().push(frame)[0]!;
  it.each([
    [encode.hello(1), { version: 1 }],
    [encode.events(1, 3, [{ kind: EventKind.DELETE, path: 'x' }, { kind: EventKind.RENAME, path: 'a', to: 'b' }]), { root: 3, batch: [{ kind: 4, path: 'x' }, { kind: 5, path: 'a', to: 'b' }] }],
    [encode.write(1, 0, 'f', 0o600, false, Buffer.from('d')), { root: 0, path: 'f', mode: 0o600, more: false, data: Buffer.from('d') }],
    [encode.write(1, 0, 'f', 0o600, true, Buffer.from('d'), 5n), { root: 0, path: 'f', mode: 0o600, mtimeNs: 5n, more: true, data: Buffer.from('d') }],
    [encode.append(1, true, Buffer.from('d')), { more: true, data: Buffer.from('d') }],
    [encode.mkdir(1, 0, 'd', 0o700), { root: 0, path: 'd', mode: 0o700 }],
    [encode.symlink(1, 0, 'l', 't'), { root: 0, path: 'l', target: 't' }],
    [encode.rename(1, 0, 'a', 'b'), { root: 0, path: 'a', to: 'b' }],
    [encode.list(1, 0, ''), { root: 0, path: '' }],
    [encode.ping(1), {}],
  ])('round-trips %#', (frame, fields) => {
    expect(decode.request(split(frame))).toEqual(fields);
  });

  it('refuses unknown ops, truncated fields and trailing bytes', () => {
    expect(() => decode.request({ op: 0x42, id: 1, payload: Buffer.alloc(0) })).toThrow(/unknown request op 0x42/);
    expect(() => decode.request({ op: Op.MKDIR, id: 1, payload: Buffer.from('00000561', 'hex') })).toThrow(ProtocolError);
    expect(() => decode.request({ op: Op.PING, id: 1, payload: Buffer.from([0]) })).toThrow(/1 unexpected bytes/);
  });
});

describe('FrameDecoder', () => {
  const frames = Buffer.concat([encode.ok(1), encode.err(2, 2, 'gone'), encode.ok(3, Buffer.from('0005', 'hex'))]);

  it('gives the same frames however the stream is cut', () => {
    const whole = new FrameDecoder().push(frames);
    expect(whole.map((f) => [f.op, f.id, hex(f.payload)])).toEqual([
      [Op.OK, 1, ''],
      [Op.ERR, 2, '00000002' + '0004' + hex(Buffer.from('gone'))],
      [Op.OK, 3, '0005'],
    ]);
    for (let cut = 1; cut < frames.length; cut++) {
      const d = new FrameDecoder();
      const got = [...d.push(frames.subarray(0, cut)), ...d.push(frames.subarray(cut))];
      expect(got).toEqual(whole);
      expect(d.pending).toBe(0);
    }
    const d = new FrameDecoder();
    const byByte = [...frames].flatMap((b) => d.push(Buffer.from([b])));
    expect(byByte).toEqual(whole);
  });

  it('keeps an incomplete frame until the rest arrives', () => {
    const d = new FrameDecoder();
    expect(d.push(frames.subarray(0, 12))).toHaveLength(1);
    expect(d.pending).toBe(3);
  });

  it.each([
    ['below the header size', 4],
    ['zero', 0],
    ['over the limit', MAX_FRAME + 1],
    ['far over the limit', 0xffffffff],
  ])('refuses a length %s', (_what, len) => {
    const b = Buffer.alloc(9);
    b.writeUInt32BE(len);
    expect(() => new FrameDecoder().push(b)).toThrow(ProtocolError);
  });
});

describe('decoding replies', () => {
  it('HELLO', () => {
    const p = Buffer.concat([Buffer.from('0001' + '00000001', 'hex'), Buffer.from('0006', 'hex'), Buffer.from('x86_64')]);
    expect(decode.hello(p)).toEqual({ version: 1, features: 1, machine: 'x86_64' });
    expect(() => decode.hello(p.subarray(0, 8))).toThrow(/HELLO reply: truncated/);
  });

  it('EVENTS', () => {
    expect(decode.eventsFailed(Buffer.from('0102', 'hex'))).toBe(258);
    expect(() => decode.eventsFailed(Buffer.from('010203', 'hex'))).toThrow(/unexpected bytes/);
  });

  const entry = (type: string, mode: number, size: number, mtime: bigint, path: string) => {
    const b = Buffer.alloc(1 + 4 + 8 + 8);
    b.write(type, 0);
    b.writeUInt32BE(mode, 1);
    b.writeBigUInt64BE(BigInt(size), 5);
    b.writeBigUInt64BE(mtime, 13);
    const p = Buffer.from(path);
    const l = Buffer.alloc(2);
    l.writeUInt16BE(p.length);
    return Buffer.concat([b, l, p]);
  };
  const count = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  };

  it('LIST, with the "more follows" bit', () => {
    const big = 1_700_000_000_123_456_789n;
    const p = Buffer.concat([count(2), entry('f', 0o644, 5, big, 'a/b'), entry('d', 0o755, 4096, 0n, 'a')]);
    expect(decode.list(p)).toEqual({
      entries: [
        { type: 'f', mode: 0o644, size: 5n, mtimeNs: big, path: 'a/b' },
        { type: 'd', mode: 0o755, size: 4096n, mtimeNs: 0n, path: 'a' },
      ],
      more: false,
    });
    expect(decode.list(Buffer.concat([count(LIST_MORE | 1), entry('l', 0o777, 3, 1n, 'ln')])).more).toBe(true);
    expect(decode.list(count(0))).toEqual({ entries: [], more: false });
  });

  it('LIST refuses unknown entry types, short entries and counts larger than the entries', () => {
    expect(() => decode.list(Buffer.concat([count(1), entry('p', 0, 0, 0n, 'fifo')]))).toThrow(/unknown type "p"/);
    expect(() => decode.list(Buffer.concat([count(2), entry('f', 0, 0, 0n, 'x')]))).toThrow(/truncated/);
    expect(() => decode.list(Buffer.concat([count(1), entry('f', 0, 0, 0n, 'x')]).subarray(0, 20))).toThrow(/truncated/);
  });

  it('ERR, as the helper writes it', () => {
    expect(decode.err(new FrameDecoder().push(encode.err(1, 18, 'WRITE ../x: leads outside'))[0]!.payload)).toEqual({ errno: 18, message: 'WRITE ../x: leads outside' });
    expect(() => decode.err(Buffer.from('0000'))).toThrow(/ERR reply: truncated/);
  });
});

describe('errnoName', () => {
  it.each([
    [2, 'ENOENT'],
    [18, 'EXDEV'],
    [40, 'ELOOP'],
    [22, 'EINVAL'],
    [999, 'E999'],
  ])('%i is %s', (n, name) => expect(errnoName(n)).toBe(name));
});
