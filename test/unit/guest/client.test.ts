/**
 * GuestClient against a fake helper in the same process: it reads the client's frames with the real
 * decoder and answers as a test tells it to (out of order, with errors, split, or not at all).
 */
import { Duplex, PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { GuestClient, GuestError } from '../../../src/guest/client.js';
import { decode, encode, EventKind, FrameDecoder, LIST_MORE, MAX_CHUNK, Op, type Frame } from '../../../src/guest/protocol.js';

class FakeGuest {
  readonly toClient = new PassThrough();
  readonly fromClient = new PassThrough();
  readonly frames: Frame[] = [];
  private readonly decoder = new FrameDecoder();
  private waiters: (() => void)[] = [];
  constructor() {
    this.fromClient.on('data', (d: Buffer) => {
      this.frames.push(...this.decoder.push(d));
      for (const w of this.waiters) w();
    });
  }
  stream(): Duplex {
    return Duplex.from({ readable: this.toClient, writable: this.fromClient });
  }
  /** Waits until n frames have arrived. */
  received(n: number): Promise<Frame[]> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.frames.length < n) return;
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(this.frames.slice(0, n));
      };
      this.waiters.push(check);
      check();
    });
  }
  reply(bytes: Buffer): void {
    this.toClient.write(bytes);
  }
}

function setup() {
  const fake = new FakeGuest();
  return { fake, guest: new GuestClient(fake.stream()) };
}
const u16 = (v: number) => Buffer.from([v >> 8, v & 0xff]);

describe('GuestClient', () => {
  it('says hello and checks the version', async () => {
    const { fake, guest } = setup();
    const hello = guest.hello();
    const [f] = await fake.received(1);
    expect(decode.request(f!)).toEqual({ version: 1 });
    fake.reply(encode.ok(f!.id, Buffer.concat([u16(1), Buffer.from('00000001', 'hex'), u16(7), Buffer.from('aarch64')])));
    expect(await hello).toEqual({ version: 1, features: 1, machine: 'aarch64' });

    const again = guest.hello();
    const [, g] = await fake.received(2);
    fake.reply(encode.ok(g!.id, Buffer.concat([u16(2), Buffer.alloc(4), u16(0)])));
    await expect(again).rejects.toMatchObject({ code: 'GUEST_PROTOCOL', message: expect.stringMatching(/protocol 2/) });
  });

  it('keeps many requests in flight and matches replies by id, in any order', async () => {
    const { fake, guest } = setup();
    const calls = [guest.events(0, [{ kind: EventKind.MODIFY, path: 'a' }]), guest.mkdir(0, 'd', 0o755), guest.ping()];
    const frames = await fake.received(3);
    expect(frames.map((f) => f.op)).toEqual([Op.EVENTS, Op.MKDIR, Op.PING]);
    expect(new Set(frames.map((f) => f.id)).size).toBe(3);
    expect(guest.inFlight).toBe(3);
    fake.reply(Buffer.concat([encode.ok(frames[2]!.id), encode.ok(frames[1]!.id), encode.ok(frames[0]!.id, u16(1))]));
    expect(await Promise.all(calls)).toEqual([1, undefined, undefined]);
    expect(guest.inFlight).toBe(0);
  });

  it('turns ERR into a GuestError with the errno name, and goes on', async () => {
    const { fake, guest } = setup();
    const refused = guest.write(0, '../x', 0o644, Buffer.from('x'));
    const [f] = await fake.received(1);
    fake.reply(encode.err(f!.id, 18, 'WRITE ../x: Invalid cross-device link (it leads outside the folder)'));
    const err = await refused.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestError);
    expect(err).toMatchObject({ code: 'EXDEV', errno: 18, message: expect.stringMatching(/leads outside/) });
    const ping = guest.ping();
    const [, p] = await fake.received(2);
    fake.reply(encode.ok(p!.id));
    await ping;
  });

  it('sends a large Buffer as WRITE + APPEND frames of at most 1 MiB, more=1 on all but the last', async () => {
    const { fake, guest } = setup();
    const data = Buffer.alloc(2 * MAX_CHUNK + 10);
    for (let i = 0; i < data.length; i += 4096) data[i] = i & 0xff;
    const done = guest.write(1, 'big', 0o600, data);
    const frames = await fake.received(3);
    const parts = frames.map((f) => decode.request(f));
    expect(frames.map((f) => f.op)).toEqual([Op.WRITE, Op.APPEND, Op.APPEND]);
    expect(new Set(frames.map((f) => f.id)).size).toBe(1);
    expect(parts.map((p) => [p.more, (p.data as Buffer).length])).toEqual([
      [true, MAX_CHUNK],
      [true, MAX_CHUNK],
      [false, 10],
    ]);
    expect(Buffer.concat(parts.map((p) => p.data as Buffer)).equals(data)).toBe(true);
    expect(parts[0]).toMatchObject({ root: 1, path: 'big', mode: 0o600 });
    fake.reply(encode.ok(frames[0]!.id));
    await done;
  });

  it('sends an empty file as one WRITE with more=0', async () => {
    const { fake, guest } = setup();
    const done = guest.write(0, 'empty', 0o644, Readable.from([]));
    const [f] = await fake.received(1);
    expect(decode.request(f!)).toMatchObject({ more: false, data: Buffer.alloc(0) });
    fake.reply(encode.ok(f!.id));
    await done;
  });

  it('re-chunks a stream, and a request made meanwhile waits until its last frame is sent', async () => {
    const { fake, guest } = setup();
    const source = new PassThrough();
    const done = guest.write(0, 's', 0o644, source);
    const meanwhile = guest.ping();
    source.write(Buffer.alloc(700_000, 1));
    source.write(Buffer.alloc(700_000, 2));
    await fake.received(1);
    source.end(Buffer.alloc(5, 3));
    const frames = await fake.received(3);
    expect(frames.map((f) => f.op)).toEqual([Op.WRITE, Op.APPEND, Op.PING]);
    const data = frames.slice(0, 2).map((f) => decode.request(f));
    expect(data.map((p) => [p.more, (p.data as Buffer).length])).toEqual([
      [true, MAX_CHUNK],
      [false, 1_400_005 - MAX_CHUNK],
    ]);
    fake.reply(Buffer.concat([encode.ok(frames[0]!.id), encode.ok(frames[2]!.id)]));
    await Promise.all([done, meanwhile]);
  });

  it('a source stream that fails mid-write fails the connection (the helper would wait for the rest)', async () => {
    const { fake, guest } = setup();
    const other = guest.mkdir(0, 'd', 0o755);
    const source = new Readable({ read() {} });
    const done = guest.write(0, 's', 0o644, source);
    source.push(Buffer.alloc(10));
    await fake.received(1);
    source.destroy(new Error('disk read failed'));
    await expect(done).rejects.toThrow('disk read failed');
    await expect(other).rejects.toMatchObject({ code: 'GUEST_CLOSED' });
    await expect(guest.ping()).rejects.toMatchObject({ code: 'GUEST_CLOSED' });
  });

  it('gathers a LIST reply spread over several frames', async () => {
    const { fake, guest } = setup();
    const listing = guest.list(0, '');
    const [f] = await fake.received(1);
    const entry = (path: string) => {
      const b = Buffer.alloc(21);
      b.write('f', 0);
      b.writeUInt32BE(0o644, 1);
      return Buffer.concat([b, u16(path.length), Buffer.from(path)]);
    };
    const count = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n >>> 0);
      return b;
    };
    fake.reply(encode.ok(f!.id, Buffer.concat([count(LIST_MORE | 2), entry('a'), entry('b')])));
    fake.reply(encode.ok(f!.id, Buffer.concat([count(1), entry('c')])));
    expect((await listing).map((e) => e.path)).toEqual(['a', 'b', 'c']);
  });

  it('rejects an over-long path before sending anything, and the connection goes on', async () => {
    const { fake, guest } = setup();
    await expect(guest.remove(0, 'x'.repeat(5000))).rejects.toThrow(RangeError);
    const ping = guest.ping();
    const [f] = await fake.received(1);
    expect(f!.op).toBe(Op.PING);
    fake.reply(encode.ok(f!.id));
    await ping;
  });

  it.each([
    ['the helper ends its output', (fake: FakeGuest) => fake.toClient.end(), 'GUEST_CLOSED', /ended its output/],
    ['a reply for an unknown id', (fake: FakeGuest) => fake.reply(encode.ok(999)), 'GUEST_PROTOCOL', /unknown request id 999/],
    ['a garbage length', (fake: FakeGuest) => fake.reply(Buffer.from('ffffffff00', 'hex')), 'GUEST_PROTOCOL', /frame length/],
    ['a request op as a reply', (fake: FakeGuest) => fake.reply(encode.ping(1)), 'GUEST_PROTOCOL', /unexpected reply op 0x20/],
    ['a malformed ERR', (fake: FakeGuest) => fake.reply(encodeFrameRaw(Op.ERR, 1, Buffer.from('00'))), 'GUEST_PROTOCOL', /ERR reply: truncated/],
  ])('rejects everything pending when %s', async (_what, act, code, message) => {
    const { fake, guest } = setup();
    const pending = [guest.ping(), guest.chmod(0, 'x', 0o644), guest.list(0, '')];
    await fake.received(3);
    act(fake);
    for (const p of pending) await expect(p).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
    expect(guest.closed).toBeInstanceOf(GuestError);
    await expect(guest.ping()).rejects.toMatchObject({ code });
  });

  it('close() rejects what is pending and every later call', async () => {
    const { fake, guest } = setup();
    const pending = guest.rename(0, 'a', 'b');
    await fake.received(1);
    guest.close();
    await expect(pending).rejects.toMatchObject({ code: 'GUEST_CLOSED', message: expect.stringMatching(/closed by envbox/) });
    await expect(guest.symlink(0, 'l', 't')).rejects.toMatchObject({ code: 'GUEST_CLOSED' });
  });
});

function encodeFrameRaw(op: number, id: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUInt32BE(5 + payload.length);
  head[4] = op;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, payload]);
}
