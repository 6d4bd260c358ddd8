/**
 * native/envbox-guest run for real on this machine, a temp folder standing in for a guest's shared folder:
 * every request through GuestClient, escape attempts, malformed frames (raw bytes), --watch echo
 * suppression, and the inotify events each EVENTS replay makes, seen by inotifywait.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex, Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GuestClient, GuestError } from '../../../src/guest/client.js';
import { encodeFrame, EventKind, FrameDecoder, Op, decode, MAX_FRAME } from '../../../src/guest/protocol.js';
import { nativeHelperPath } from '../../../src/native/locate.js';

const helper = nativeHelperPath('envbox-guest');
if (!helper) throw new Error('native/build/envbox-guest is missing: run npm run build (make -C native)');
const HELPER = helper;

let base: string;
beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'envbox-guest-'));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

interface Served {
  child: ChildProcessWithoutNullStreams;
  guest: GuestClient;
  stderr: () => string;
  exited: Promise<number | null>;
}
const running: Served[] = [];

function serve(roots: string[], watch = false): Served {
  const child = spawn(HELPER, ['serve', ...(watch ? ['--watch'] : []), ...roots]);
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const guest = new GuestClient(Duplex.from({ readable: child.stdout, writable: child.stdin }));
  const served = { child, guest, stderr: () => err, exited };
  running.push(served);
  return served;
}
afterEach(async () => {
  for (const s of running.splice(0)) {
    s.child.stdin.end();
    if (s.child.exitCode === null) s.child.kill();
    await s.exited;
  }
});

let root: string;
let outside: string;
let n = 0;
beforeEach(() => {
  n++;
  root = join(base, `root${n}`);
  outside = join(base, `outside${n}`);
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret'), 'secret');
  chmodSync(join(outside, 'secret'), 0o600);
});

const errCode = async (p: Promise<unknown>) => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GuestError);
  return (e as GuestError).code;
};
const mode = (p: string) => lstatSync(p).mode & 0o7777;
const leftovers = (dir: string) => readdirSync(dir, { recursive: true }).filter((f) => String(f).includes('.envbox-tmp-'));

describe('envbox-guest', () => {
  it('prints its protocol version', () => {
    const r = spawnSync(HELPER, ['--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('envbox-guest 1\n');
  });

  it('refuses bad command lines with a usage message', () => {
    expect(spawnSync(HELPER, [], { encoding: 'utf8' }).stderr).toMatch(/usage: envbox-guest serve/);
    expect(spawnSync(HELPER, ['serve'], { encoding: 'utf8' }).stderr).toMatch(/at least one folder ROOT/);
    expect(spawnSync(HELPER, ['serve', 'relative'], { encoding: 'utf8' }).stderr).toMatch(/must be an absolute path/);
    expect(spawnSync(HELPER, ['serve', '/nonexistent-envbox'], { encoding: 'utf8' }).status).not.toBe(0);
  });

  it('says hello with its version, features and machine', async () => {
    expect(await serve([root]).guest.hello()).toEqual({ version: 1, features: 2, machine: 'x86_64' });
    expect((await serve([root], true).guest.hello()).features).toBe(3);
  });

  it("WRITE_T gives the file the host's mtime, to the nanosecond, whole or streamed; plain WRITE leaves the write's time", async () => {
    const { guest } = serve([root]);
    const old = 1_600_000_000_123_456_789n;
    await guest.write(0, 'kept.txt', 0o644, Buffer.from('kept'), old);
    const st = statSync(join(root, 'kept.txt'), { bigint: true });
    expect(st.mtimeNs).toBe(old);
    await guest.write(0, 'big/streamed.bin', 0o600, Readable.from([Buffer.alloc(1024 * 1024 + 5), Buffer.alloc(3)]), old + 1n);
    expect(statSync(join(root, 'big/streamed.bin'), { bigint: true }).mtimeNs).toBe(old + 1n);
    expect(statSync(join(root, 'big/streamed.bin')).size).toBe(1024 * 1024 + 8);
    const before = Date.now();
    await guest.write(0, 'plain.txt', 0o644, Buffer.from('plain'));
    expect(statSync(join(root, 'plain.txt')).mtimeMs).toBeGreaterThanOrEqual(before - 1000);
    expect(leftovers(root)).toEqual([]);
  });

  it('writes files through a temp file, with mode, parents, several chunks and streams', async () => {
    const { guest } = serve([root]);
    await guest.write(0, 'a.txt', 0o640, Buffer.from('hello'));
    expect(readFileSync(join(root, 'a.txt'), 'utf8')).toBe('hello');
    expect(mode(join(root, 'a.txt'))).toBe(0o640);
    const big = Buffer.alloc(2.5 * 1024 * 1024 + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    await guest.write(0, 'deep/er/big.bin', 0o755, big);
    expect(readFileSync(join(root, 'deep/er/big.bin')).equals(big)).toBe(true);
    expect(mode(join(root, 'deep/er/big.bin'))).toBe(0o755);
    await guest.write(0, 'streamed', 0o600, Readable.from([big.subarray(0, 100), big.subarray(100, 2_000_000), big.subarray(2_000_000)]));
    expect(readFileSync(join(root, 'streamed')).equals(big)).toBe(true);
    await guest.write(0, 'a.txt', 0o644, Readable.from([]));
    expect(readFileSync(join(root, 'a.txt'), 'utf8')).toBe('');
    expect(leftovers(root)).toEqual([]);
  });

  it('keeps many requests in flight and answers each by id', async () => {
    const { guest } = serve([root]);
    const writes = Array.from({ length: 200 }, (_, i) => guest.write(0, `many/${i}`, 0o644, Buffer.from(String(i))));
    const missing = guest.chmod(0, 'nope', 0o644);
    await Promise.all(writes);
    expect(await errCode(missing)).toBe('ENOENT');
    await guest.ping();
    expect(readdirSync(join(root, 'many'))).toHaveLength(200);
    expect(readFileSync(join(root, 'many/123'), 'utf8')).toBe('123');
  });

  it('makes folders like mkdir -p and only changes the mode of one that exists', async () => {
    const { guest } = serve([root]);
    await guest.mkdir(0, 'x/y/z', 0o700);
    expect(mode(join(root, 'x/y/z'))).toBe(0o700);
    await guest.mkdir(0, 'x/y/z', 0o751);
    expect(mode(join(root, 'x/y/z'))).toBe(0o751);
    writeFileSync(join(root, 'file'), '');
    expect(await errCode(guest.mkdir(0, 'file', 0o755))).toBe('ENOTDIR');
  });

  it('makes and replaces symlinks, storing the target verbatim', async () => {
    const { guest } = serve([root]);
    await guest.symlink(0, 'l', '../../etc/passwd');
    expect(readlinkSync(join(root, 'l'))).toBe('../../etc/passwd');
    writeFileSync(join(root, 'f'), 'x');
    await guest.symlink(0, 'f', 'l');
    expect(readlinkSync(join(root, 'f'))).toBe('l');
    mkdirSync(join(root, 'd/e'), { recursive: true });
    await guest.symlink(0, 'd', 'f');
    expect(readlinkSync(join(root, 'd'))).toBe('f');
    expect(await errCode(guest.symlink(0, 'm', ''))).toBe('EINVAL');
  });

  it('removes files and trees without following symlinks; a missing path is fine', async () => {
    const { guest } = serve([root]);
    mkdirSync(join(root, 't/u'), { recursive: true });
    writeFileSync(join(root, 't/u/f'), 'x');
    symlinkSync(outside, join(root, 't/out'));
    await guest.remove(0, 't');
    expect(existsSync(join(root, 't'))).toBe(false);
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('secret');
    await guest.remove(0, 't');
    await guest.remove(0, 'no/such/thing');
  });

  it('renames, making the parents of the target', async () => {
    const { guest } = serve([root]);
    writeFileSync(join(root, 'a'), 'A');
    await guest.rename(0, 'a', 'b/c/d');
    expect(readFileSync(join(root, 'b/c/d'), 'utf8')).toBe('A');
    expect(await errCode(guest.rename(0, 'a', 'e'))).toBe('ENOENT');
  });

  it('changes modes, leaving symlinks (and what they point at) alone', async () => {
    const { guest } = serve([root]);
    writeFileSync(join(root, 'f'), '');
    await guest.chmod(0, 'f', 0o4711);
    expect(mode(join(root, 'f'))).toBe(0o4711);
    symlinkSync(join(outside, 'secret'), join(root, 'ln'));
    await guest.chmod(0, 'ln', 0o777);
    expect(mode(join(outside, 'secret'))).toBe(0o600);
  });

  it('lists a folder recursively, without temp files, in one or several frames', async () => {
    const { guest } = serve([root]);
    mkdirSync(join(root, 'd/e'), { recursive: true });
    writeFileSync(join(root, 'd/e/f'), '12345');
    chmodSync(join(root, 'd/e/f'), 0o604);
    symlinkSync('e/f', join(root, 'd/l'));
    writeFileSync(join(root, '.envbox-tmp-abcdef'), '');
    const all = await guest.list(0, '');
    const byPath = Object.fromEntries(all.map((e) => [e.path, e]));
    expect(Object.keys(byPath).sort()).toEqual(['d', 'd/e', 'd/e/f', 'd/l']);
    expect(byPath['d/e/f']).toMatchObject({ type: 'f', mode: 0o604, size: 5n });
    expect(byPath['d/e/f']!.mtimeNs).toBe(statSync(join(root, 'd/e/f'), { bigint: true }).mtimeNs);
    expect(byPath['d/l']!.type).toBe('l');
    expect(byPath.d!.type).toBe('d');
    expect((await guest.list(0, 'd/e')).map((e) => e.path)).toEqual(['d/e/f']);
    expect(await errCode(guest.list(0, 'nope'))).toBe('ENOENT');
    // 20,000 entries with long names are more than one frame's worth
    const wide = join(root, 'wide');
    mkdirSync(wide);
    const long = 'n'.repeat(60);
    for (let i = 0; i < 20_000; i++) writeFileSync(join(wide, `${long}${i}`), '');
    const listed = await guest.list(0, 'wide');
    expect(listed).toHaveLength(20_000);
    expect(new Set(listed.map((e) => e.path)).size).toBe(20_000);
  });

  it('serves several roots by index and refuses an index it does not have', async () => {
    const other = join(base, `second${n}`);
    mkdirSync(other);
    const { guest } = serve([root, other]);
    await guest.write(0, 'in-first', 0o644, Buffer.from('1'));
    await guest.write(1, 'in-second', 0o644, Buffer.from('2'));
    expect(readFileSync(join(other, 'in-second'), 'utf8')).toBe('2');
    expect(await errCode(guest.write(2, 'x', 0o644, Buffer.from('')))).toBe('EINVAL');
    expect(await errCode(guest.events(7, [{ kind: EventKind.MODIFY, path: 'x' }]))).toBe('EINVAL');
  });
});

describe('envbox-guest holds every folder beneath its roots (for uncached 9p, docs/events.md)', () => {
  const held = (pid: number) =>
    new Set(
      readdirSync(`/proc/${pid}/fd`)
        .map((fd) => {
          try {
            return readlinkSync(`/proc/${pid}/fd/${fd}`);
          } catch {
            return '';
          }
        })
        .filter((p) => p.startsWith(`${root}/`))
        .map((p) => p.slice(root.length + 1)),
    );

  it('from the start, as folders come and go, and through renames', async () => {
    mkdirSync(join(root, 'a/b'), { recursive: true });
    writeFileSync(join(root, 'a/file'), '');
    const { guest, child } = serve([root]);
    await guest.ping();
    expect([...held(child.pid!)].sort()).toEqual(['a', 'a/b']);
    await guest.mkdir(0, 'c/d', 0o755);
    await guest.write(0, 'w/x/file', 0o644, Buffer.from(''));
    expect([...held(child.pid!)].sort()).toEqual(['a', 'a/b', 'c', 'c/d', 'w', 'w/x']);
    await guest.rename(0, 'c', 'moved/c');
    expect([...held(child.pid!)].sort()).toEqual(['a', 'a/b', 'moved', 'moved/c', 'moved/c/d', 'w', 'w/x']);
    await guest.remove(0, 'a');
    expect([...held(child.pid!)].sort()).toEqual(['moved', 'moved/c', 'moved/c/d', 'w', 'w/x']);
    // mount mode: a folder the host made is held once replayed, one the host removed is let go
    mkdirSync(join(root, 'host/made'), { recursive: true });
    rmSync(join(root, 'w'), { recursive: true });
    await guest.events(0, [
      { kind: EventKind.MKDIR, path: 'host' },
      { kind: EventKind.DELETE, path: 'w' },
    ]);
    expect([...held(child.pid!)].sort()).toEqual(['host', 'host/made', 'moved', 'moved/c', 'moved/c/d']);
  });
});

describe('envbox-guest keeps every path beneath its root', () => {
  const bad = ['../x', 'a/../../x', '/etc/passwd', 'a//b', './a', 'a/.', 'a/', ''];
  it.each(bad)('refuses the path %j in every operation with EINVAL', async (p) => {
    const { guest } = serve([root]);
    mkdirSync(join(root, 'a'), { recursive: true });
    writeFileSync(join(root, 'a/b'), 'x');
    for (const call of [
      guest.write(0, p, 0o644, Buffer.from('pwned')),
      guest.mkdir(0, p, 0o755),
      guest.symlink(0, p, 'x'),
      guest.remove(0, p),
      guest.rename(0, p, 'moved'),
      guest.rename(0, 'a/b', p),
      guest.chmod(0, p, 0o777),
      guest.events(0, [{ kind: EventKind.CREATE, path: p }]),
    ]) {
      expect(await errCode(call)).toBe('EINVAL');
    }
    if (p !== '') expect(await errCode(guest.list(0, p))).toBe('EINVAL');
    expect(readFileSync(join(root, 'a/b'), 'utf8')).toBe('x');
    expect(readdirSync(outside)).toEqual(['secret']);
  });

  it('refuses a symlink anywhere in the parent path (ELOOP), inside or outside the root', async () => {
    const { guest } = serve([root]);
    symlinkSync(outside, join(root, 'out'));
    mkdirSync(join(root, 'real'));
    symlinkSync('real', join(root, 'in'));
    for (const p of ['out/secret', 'out/new', 'in/new', 'in/deeper/new']) {
      expect(await errCode(guest.write(0, p, 0o644, Buffer.from('pwned'))), p).toBe('ELOOP');
    }
    expect(await errCode(guest.mkdir(0, 'out/sub', 0o755))).toBe('ELOOP');
    expect(await errCode(guest.chmod(0, 'out/secret', 0o777))).toBe('ELOOP');
    expect(await errCode(guest.remove(0, 'out/secret'))).toBe('ELOOP');
    expect(await errCode(guest.rename(0, 'out/secret', 'stolen'))).toBe('ELOOP');
    expect(await errCode(guest.rename(0, 'real', 'out/real'))).toBe('ELOOP');
    expect(await errCode(guest.list(0, 'out'))).toBe('ELOOP');
    expect(await guest.events(0, [{ kind: EventKind.MODIFY, path: 'out/secret' }, { kind: EventKind.DELETE, path: 'out/x' }])).toBe(2);
    expect(readdirSync(outside)).toEqual(['secret']);
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('secret');
    expect(mode(join(outside, 'secret'))).toBe(0o600);
  });

  it('never follows a symlink at the final component', async () => {
    const { guest } = serve([root]);
    symlinkSync(join(outside, 'secret'), join(root, 'ln'));
    await guest.write(0, 'ln', 0o644, Buffer.from('replaced'));
    expect(lstatSync(join(root, 'ln')).isFile()).toBe(true);
    symlinkSync(outside, join(root, 'dirln'));
    await guest.remove(0, 'dirln');
    expect(existsSync(join(root, 'dirln'))).toBe(false);
    symlinkSync(outside, join(root, 'dirln2'));
    expect(await errCode(guest.mkdir(0, 'dirln2', 0o777))).toBe('ENOTDIR');
    await guest.rename(0, 'dirln2', 'moved');
    expect(readlinkSync(join(root, 'moved'))).toBe(outside);
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('secret');
    expect(mode(outside)).not.toBe(0o777);
    expect(readdirSync(outside)).toEqual(['secret']);
  });

  it('rejects over-long strings: the client before sending, the helper with EINVAL', async () => {
    const { guest, child } = serve([root]);
    await expect(guest.write(0, 'x'.repeat(5000), 0o644, Buffer.from(''))).rejects.toThrow(/at most 4095/);
    // A raw 4096-byte path: one byte over the helper's limit.
    const path = Buffer.alloc(4096, 'y');
    const payload = Buffer.concat([Buffer.from([0]), u16(path.length), path]);
    const replies = await rawExchange(child, [encodeFrame(Op.REMOVE, 9, payload), encodeFrame(Op.PING, 10)], 2);
    expect(replies[0]).toMatchObject({ op: Op.ERR, id: 9 });
    expect(decode.err(replies[0]!.payload).errno).toBe(22);
    expect(replies[1]).toMatchObject({ op: Op.OK, id: 10 });
  });
});

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

/** Writes raw bytes to a helper served without a GuestClient and collects `count` replies. */
async function rawExchange(child: ChildProcessWithoutNullStreams, frames: Buffer[], count: number) {
  const decoder = new FrameDecoder();
  const got: { op: number; id: number; payload: Buffer }[] = [];
  child.stdout.removeAllListeners('data');
  const done = new Promise<void>((resolve) =>
    child.stdout.on('data', (d: Buffer) => {
      got.push(...decoder.push(d));
      if (got.length >= count) resolve();
    }),
  );
  child.stdin.write(Buffer.concat(frames));
  await done;
  return got;
}

function rawServe(): { child: ChildProcessWithoutNullStreams; out: () => Buffer; exited: Promise<number | null> } {
  const child = spawn(HELPER, ['serve', root]);
  const chunks: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  child.stderr.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => Buffer.concat(chunks), exited };
}

describe('envbox-guest on malformed input', () => {
  it.each([
    ['a length below the header size', Buffer.concat([u32(4), Buffer.alloc(4)])],
    ['a length over the limit', Buffer.concat([u32(MAX_FRAME + 1), Buffer.alloc(16)])],
    ['a frame cut short by the end of input', Buffer.concat([u32(100), Buffer.from([Op.PING]), u32(1)])],
    ['an APPEND with no WRITE', encodeFrame(Op.APPEND, 3, Buffer.from([0]))],
    ['a WRITE whose continuation is another request', Buffer.concat([encodeFrame(Op.WRITE, 4, Buffer.concat([Buffer.from([0]), u16(1), Buffer.from('w'), u32(0o644), Buffer.from([1]), Buffer.from('data')])), encodeFrame(Op.PING, 5)])],
    ['a WRITE whose input ends before its last chunk', encodeFrame(Op.WRITE, 4, Buffer.concat([Buffer.from([0]), u16(1), Buffer.from('w'), u32(0o644), Buffer.from([1]), Buffer.from('data')]))],
  ])('exits 2 without another byte after %s', async (_what, bytes) => {
    const { child, out, exited } = rawServe();
    child.stdin.end(bytes);
    expect(await exited).toBe(2);
    expect(out().length).toBe(0);
    expect(leftovers(root)).toEqual([]);
  });

  it('answers a well-framed request with bad fields with ERR and goes on', async () => {
    const { child, out, exited } = rawServe();
    child.stdin.end(
      Buffer.concat([
        encodeFrame(0x55, 1), // unknown op
        encodeFrame(Op.MKDIR, 2, Buffer.concat([Buffer.from([0]), u16(50), Buffer.from('short')])), // string past the end
        encodeFrame(Op.HELLO, 3, Buffer.from([0])), // half a version
        encodeFrame(Op.HELLO, 4, u16(2)), // a version it does not speak
        encodeFrame(Op.EVENTS, 5, Buffer.concat([Buffer.from([0]), u16(2), Buffer.from([1]), u16(1), Buffer.from('a')])), // one entry of two
        encodeFrame(Op.EVENTS, 6, Buffer.concat([Buffer.from([0]), u16(1), Buffer.from([9]), u16(1), Buffer.from('a')])), // unknown kind
        encodeFrame(Op.SYMLINK, 7, Buffer.concat([Buffer.from([0]), u16(1), Buffer.from('s'), u16(3), Buffer.from('a\0b')])), // NUL
        encodeFrame(Op.PING, 8),
      ]),
    );
    expect(await exited).toBe(0);
    const replies = new FrameDecoder().push(out());
    expect(replies.map((r) => [r.id, r.op])).toEqual([
      [1, Op.ERR],
      [2, Op.ERR],
      [3, Op.ERR],
      [4, Op.ERR],
      [5, Op.ERR],
      [6, Op.ERR],
      [7, Op.ERR],
      [8, Op.OK],
    ]);
    const errs = replies.slice(0, 7).map((r) => decode.err(r.payload));
    expect(errs[0]).toEqual({ errno: 38, message: expect.stringMatching(/unknown op 0x55/) });
    expect(errs[3]).toEqual({ errno: 71, message: expect.stringMatching(/version 2/) });
    expect(errs.map((e) => e.errno)).toEqual([38, 22, 22, 71, 22, 22, 22]);
    expect(readdirSync(root)).toEqual([]);
  });
});

// ---------- inotify ----------

interface Watcher {
  events: string[];
  /** Waits until an event line matching re arrives (or times out) and returns all lines so far. */
  until(re: RegExp): Promise<string[]>;
  stop(): Promise<void>;
}

/** inotifywait -m -r on dir, lines "EVENTS path-relative-to-dir". */
async function watch(dir: string): Promise<Watcher> {
  const child = spawn('inotifywait', ['-m', '-r', '--format', '%e %w%f', dir]);
  const events: string[] = [];
  let buf = '';
  let waiters: (() => void)[] = [];
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) events.push(l.replace(`${dir}/`, ' ').replace(/ {2}/, ' ').replace(` ${dir}`, ' .'));
    for (const w of waiters) w();
  });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('Watches established')) resolve();
    });
    child.on('error', reject);
  });
  return {
    events,
    until: (re) =>
      new Promise((resolve) => {
        const check = () => {
          if (events.some((e) => re.test(e))) {
            waiters = waiters.filter((w) => w !== check);
            resolve(events);
          }
        };
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== check);
          resolve(events);
        }, 5000);
        waiters.push(() => {
          check();
          if (events.some((e) => re.test(e))) clearTimeout(timer);
        });
        check();
      }),
    stop: async () => {
      child.kill();
      await new Promise((r) => child.on('exit', r));
    },
  };
}

describe('envbox-guest EVENTS replay, seen by inotifywait -m -r', () => {
  let w: Watcher | undefined;
  afterEach(async () => {
    await w?.stop();
    w = undefined;
  });

  /** Replays one batch and returns the watcher's lines it produced, up to a PING barrier marker. */
  async function replay(guest: GuestClient, batch: Parameters<GuestClient['events']>[1]) {
    w!.events.length = 0;
    const failed = await guest.events(0, batch);
    // a marker file written after the batch: every event before it has been read by the watcher
    const marker = `.marker${Math.random().toString(36).slice(2)}`;
    writeFileSync(join(root, marker), '');
    await w!.until(new RegExp(`CREATE ${marker.replace('.', '\\.')}$`));
    rmSync(join(root, marker));
    // Reading a folder (the helper pins new folders, inotifywait -r watches them) is noise here.
    const lines = w!.events.filter((l) => !l.includes('.marker') && !/^(OPEN|ACCESS|CLOSE_NOWRITE)\S*,ISDIR /.test(l));
    return { failed, lines };
  }
  const tmpNames = (lines: string[]) => lines.map((l) => l.replace(/\.envbox-tmp-[A-Za-z0-9]{6}/, 'TMP'));

  it('MODIFY: IN_MODIFY on the file, content, mode and mtime unchanged', async () => {
    writeFileSync(join(root, 'f'), 'content');
    chmodSync(join(root, 'f'), 0o640);
    const before = statSync(join(root, 'f'), { bigint: true });
    const { guest } = serve([root]);
    w = await watch(root);
    const { failed, lines } = await replay(guest, [{ kind: EventKind.MODIFY, path: 'f' }]);
    expect(failed).toBe(0);
    expect(lines).toEqual(['MODIFY f']);
    const after = statSync(join(root, 'f'), { bigint: true });
    expect(readFileSync(join(root, 'f'), 'utf8')).toBe('content');
    expect([after.mode, after.mtimeNs, after.ino]).toEqual([before.mode, before.mtimeNs, before.ino]);
  });

  it('CREATE and MKDIR: moved away and back, so watchers see the path arrive (and watch a new folder)', async () => {
    writeFileSync(join(root, 'new'), 'n');
    mkdirSync(join(root, 'later/inner'), { recursive: true });
    const { guest } = serve([root]);
    w = await watch(root);
    const { failed, lines } = await replay(guest, [
      { kind: EventKind.CREATE, path: 'new' },
      { kind: EventKind.MKDIR, path: 'later/inner' },
    ]);
    expect(failed).toBe(0);
    expect(tmpNames(lines)).toEqual([
      'MOVED_FROM new',
      'MOVED_TO TMP',
      'MOVED_FROM TMP',
      'MOVED_TO new',
      'MOVED_FROM,ISDIR later/inner',
      'MOVED_TO,ISDIR later/TMP',
      'MOVE_SELF later/TMP/',
      'MOVED_FROM,ISDIR later/TMP',
      'MOVED_TO,ISDIR later/inner',
      'MOVE_SELF later/inner/',
    ]);
    // inotifywait still watches the replayed folder (in a VM it starts to: test/integration/qemu/events.test.ts)
    w.events.length = 0;
    writeFileSync(join(root, 'later/inner/x'), '');
    expect(await w.until(/CREATE later\/inner\/x$/)).toContain('CREATE later/inner/x');
    expect(readFileSync(join(root, 'new'), 'utf8')).toBe('n');
    expect(leftovers(root)).toEqual([]);
  });

  it('DELETE: a short-lived file of that name, so watchers see IN_DELETE; a path that exists again is left alone', async () => {
    writeFileSync(join(root, 'back'), 'keep');
    const { guest } = serve([root]);
    w = await watch(root);
    const { failed, lines } = await replay(guest, [
      { kind: EventKind.DELETE, path: 'gone' },
      { kind: EventKind.DELETE, path: 'back' },
    ]);
    expect(failed).toBe(1);
    expect(lines.filter((l) => !/OPEN|CLOSE/.test(l))).toEqual(['CREATE gone', 'DELETE gone']);
    expect(readFileSync(join(root, 'back'), 'utf8')).toBe('keep');
    expect(existsSync(join(root, 'gone'))).toBe(false);
  });

  it('RENAME: moved back and forward again, ending with a paired from → to move', async () => {
    mkdirSync(join(root, 'd'));
    writeFileSync(join(root, 'd/to'), 't');
    const { guest } = serve([root]);
    w = await watch(root);
    const { failed, lines } = await replay(guest, [{ kind: EventKind.RENAME, path: 'from', to: 'd/to' }]);
    expect(failed).toBe(0);
    expect(lines).toEqual(['MOVED_FROM d/to', 'MOVED_TO from', 'MOVED_FROM from', 'MOVED_TO d/to']);
    expect(readFileSync(join(root, 'd/to'), 'utf8')).toBe('t');
    expect(existsSync(join(root, 'from'))).toBe(false);
  });

  it('RENAME of a folder: `from` goes away as a short-lived entry, `to` is moved away and back', async () => {
    mkdirSync(join(root, 'to/inner'), { recursive: true });
    const { guest } = serve([root]);
    w = await watch(root);
    const { failed, lines } = await replay(guest, [{ kind: EventKind.RENAME, path: 'from', to: 'to' }]);
    expect(failed).toBe(0);
    expect(tmpNames(lines)).toEqual([
      'CREATE from',
      'OPEN from',
      'CLOSE_WRITE,CLOSE from',
      'DELETE from',
      'MOVED_FROM,ISDIR to',
      'MOVED_TO,ISDIR TMP',
      'MOVE_SELF TMP/',
      'MOVED_FROM,ISDIR TMP',
      'MOVED_TO,ISDIR to',
      'MOVE_SELF to/',
    ]);
    expect(existsSync(join(root, 'to/inner'))).toBe(true);
    expect(existsSync(join(root, 'from'))).toBe(false);
  });

  it('RENAME where the host has made `from` again is left alone and counted as failed', async () => {
    writeFileSync(join(root, 'from'), 'f');
    writeFileSync(join(root, 'to'), 't');
    const { guest } = serve([root]);
    w = await watch(root);
    const { failed, lines } = await replay(guest, [{ kind: EventKind.RENAME, path: 'from', to: 'to' }]);
    expect(failed).toBe(1);
    expect(lines).toEqual([]);
    expect(readFileSync(join(root, 'from'), 'utf8')).toBe('f');
  });

  it('RESCAN: a folder is moved away and back; the root gets a short-lived entry', async () => {
    mkdirSync(join(root, 'pkg/a'), { recursive: true });
    const { guest } = serve([root]);
    w = await watch(root);
    const { failed, lines } = await replay(guest, [
      { kind: EventKind.RESCAN, path: 'pkg' },
      { kind: EventKind.RESCAN, path: '' },
    ]);
    expect(failed).toBe(0);
    expect(tmpNames(lines.filter((l) => !/OPEN|CLOSE/.test(l)))).toEqual([
      'MOVED_FROM,ISDIR pkg',
      'MOVED_TO,ISDIR TMP',
      'MOVE_SELF TMP/',
      'MOVED_FROM,ISDIR TMP',
      'MOVED_TO,ISDIR pkg',
      'MOVE_SELF pkg/',
      'CREATE TMP',
      'DELETE TMP',
    ]);
  });

  it('counts paths that no longer exist as failed, replaying the rest', async () => {
    writeFileSync(join(root, 'here'), '');
    const { guest } = serve([root]);
    w = await watch(root);
    const { failed, lines } = await replay(guest, [
      { kind: EventKind.MODIFY, path: 'missing' },
      { kind: EventKind.CREATE, path: 'missing/too' },
      { kind: EventKind.MODIFY, path: 'here' },
    ]);
    expect(failed).toBe(2);
    expect(lines).toEqual(['MODIFY here']);
  });

  it('--watch drops replays for paths the guest itself changed (2 s, or while unchanged since), not for its own replays', async () => {
    writeFileSync(join(root, 'host-side'), '');
    mkdirSync(join(root, 'sub'));
    const { guest } = serve([root], true);
    await guest.hello();
    w = await watch(root);
    writeFileSync(join(root, 'guest-side'), 'g'); // a guest process writes
    writeFileSync(join(root, 'sub/nested'), 'g');
    await w.until(/CLOSE_WRITE,CLOSE sub\/nested$/);
    const first = await replay(guest, [
      { kind: EventKind.MODIFY, path: 'guest-side' },
      { kind: EventKind.MODIFY, path: 'sub/nested' },
      { kind: EventKind.MODIFY, path: 'host-side' },
    ]);
    expect(first).toEqual({ failed: 0, lines: ['MODIFY host-side'] });
    // its own replay is not mistaken for a guest change
    expect((await replay(guest, [{ kind: EventKind.MODIFY, path: 'host-side' }])).lines).toEqual(['MODIFY host-side']);
    // a folder the guest creates later is watched too
    mkdirSync(join(root, 'made'));
    await w.until(/CREATE,ISDIR made$/);
    await guest.ping();
    writeFileSync(join(root, 'made/x'), '');
    await w.until(/CLOSE_WRITE,CLOSE made\/x$/);
    expect((await replay(guest, [{ kind: EventKind.MODIFY, path: 'made/x' }])).lines).toEqual([]);
    // after 2 s a replay for it is still an echo while the file is as the guest left it (a late host
    // watcher, an env sync --wait rescan), but a host change to it goes through
    await new Promise((r) => setTimeout(r, 2100));
    expect((await replay(guest, [{ kind: EventKind.MODIFY, path: 'guest-side' }])).lines).toEqual([]);
    // (a host change made through the helper itself: a local write here would be a guest one)
    await guest.write(0, 'guest-side', 0o644, Buffer.from('changed on the host'));
    await w.until(/MOVED_TO guest-side$/);
    expect((await replay(guest, [{ kind: EventKind.MODIFY, path: 'guest-side' }])).lines).toEqual(['MODIFY guest-side']);
  });
});
