/**
 * GuestClient: the host's end of the envbox-guest protocol, over any duplex byte stream (an SSH exec
 * channel running `envbox-guest serve [--watch] ROOT...` in production, a socket pair in tests).
 *
 *   const guest = new GuestClient(channel);
 *   await guest.hello();                                  // { version, features, machine }
 *   await guest.events(0, [{ kind: EventKind.MODIFY, path: 'src/a.ts' }]);  // → number of entries that failed
 *   await guest.write(0, 'src/a.ts', 0o644, bufferOrReadable);   // temp file + rename in the guest
 *   await guest.mkdir(0, 'src/new', 0o755);  guest.symlink(0, 'link', 'target');  guest.remove(0, 'old');
 *   await guest.rename(0, 'a', 'b/c');  guest.chmod(0, 'run.sh', 0o755);
 *   await guest.list(0, '');                              // ListEntry[], recursive
 *   await guest.ping();                                   // barrier: everything sent before it is done
 *   guest.close();
 *
 * Roots are indexes into the helper's ROOT arguments; paths are relative to them. Any number of requests
 * may be in flight: they are sent in call order, the helper runs them in order and replies carry their id.
 * A WRITE from a Readable holds the stream until its last chunk is sent (the helper needs its APPEND frames
 * back to back); later requests wait their turn. A refused request rejects with a GuestError carrying the
 * errno name (`code`, e.g. 'ENOENT', 'EXDEV'); a closed or broken stream rejects everything pending with a
 * GuestError whose code is 'GUEST_CLOSED' or 'GUEST_PROTOCOL'.
 */
import type { Duplex, Readable } from 'node:stream';
import {
  decode,
  encode,
  errnoName,
  FrameDecoder,
  MAX_CHUNK,
  Op,
  PROTO_VERSION,
  ProtocolError,
  type Frame,
  type GuestEvent,
  type Hello,
  type ListEntry,
} from './protocol.js';

export { EventKind, Feature, Op, PROTO_VERSION, type GuestEvent, type Hello, type ListEntry } from './protocol.js';

export class GuestError extends Error {
  /** errno name ('ENOENT', 'EXDEV', ...) for a refused request, or GUEST_CLOSED / GUEST_PROTOCOL. */
  readonly code: string;
  /** The guest's errno, 0 when the connection failed. */
  readonly errno: number;
  constructor(code: string, message: string, errno = 0, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GuestError';
    this.code = code;
    this.errno = errno;
  }
}

interface Pending {
  op: string;
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
  /** LIST replies may span several frames. */
  list?: ListEntry[];
}

export class GuestClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly decoder = new FrameDecoder();
  /** Serialises sending, so a streamed WRITE's frames are never interleaved with other requests. */
  private sendChain: Promise<void> = Promise.resolve();
  private failure: GuestError | undefined;

  constructor(private readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', (err: Error) => this.fail(new GuestError('GUEST_CLOSED', `envbox-guest connection failed: ${err.message}`, 0, { cause: err })));
    stream.on('close', () => this.fail(new GuestError('GUEST_CLOSED', 'envbox-guest connection closed')));
    stream.on('end', () => this.fail(new GuestError('GUEST_CLOSED', 'envbox-guest ended its output (it exits on a malformed request; see its stderr)')));
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Set once the connection has failed or closed; every later call rejects with it. */
  get closed(): GuestError | undefined {
    return this.failure;
  }

  async hello(): Promise<Hello> {
    const hello = decode.hello(await this.request('HELLO', (id) => [encode.hello(id)]));
    if (hello.version !== PROTO_VERSION) {
      throw new GuestError('GUEST_PROTOCOL', `envbox-guest speaks protocol ${hello.version}, envbox ${PROTO_VERSION}: reinstall the helper (env up does)`);
    }
    return hello;
  }

  /** Replays a batch of host changes in the guest; resolves to how many entries failed (paths gone again). */
  async events(root: number, batch: readonly GuestEvent[]): Promise<number> {
    return decode.eventsFailed(await this.request('EVENTS', (id) => [encode.events(id, root, batch)]));
  }

  /**
   * Writes a whole file (created with its parents, or replaced) in chunks of at most 1 MiB; with
   * `mtimeNs` (a helper with Feature.MTIME), the guest's file gets that mtime.
   */
  async write(root: number, path: string, mode: number, data: Buffer | Readable, mtimeNs?: bigint): Promise<void> {
    if (Buffer.isBuffer(data)) {
      await this.request('WRITE', (id) => {
        const frames = [encode.write(id, root, path, mode, data.length > MAX_CHUNK, data.subarray(0, MAX_CHUNK), mtimeNs)];
        for (let off = MAX_CHUNK; off < data.length; off += MAX_CHUNK) {
          frames.push(encode.append(id, off + MAX_CHUNK < data.length, data.subarray(off, off + MAX_CHUNK)));
        }
        return frames;
      });
      return;
    }
    await this.request('WRITE', (id) => this.streamFrames(id, root, path, mode, data, mtimeNs));
  }

  async mkdir(root: number, path: string, mode: number): Promise<void> {
    await this.request('MKDIR', (id) => [encode.mkdir(id, root, path, mode)]);
  }
  async symlink(root: number, path: string, target: string): Promise<void> {
    await this.request('SYMLINK', (id) => [encode.symlink(id, root, path, target)]);
  }
  async remove(root: number, path: string): Promise<void> {
    await this.request('REMOVE', (id) => [encode.remove(id, root, path)]);
  }
  async rename(root: number, from: string, to: string): Promise<void> {
    await this.request('RENAME', (id) => [encode.rename(id, root, from, to)]);
  }
  async chmod(root: number, path: string, mode: number): Promise<void> {
    await this.request('CHMOD', (id) => [encode.chmod(id, root, path, mode)]);
  }

  /** Every file, folder and symlink under path ('' = the root), recursively, with paths relative to the root. */
  async list(root: number, path: string): Promise<ListEntry[]> {
    const entries: ListEntry[] = [];
    await this.request('LIST', (id) => [encode.list(id, root, path)], entries);
    return entries;
  }

  async ping(): Promise<void> {
    await this.request('PING', (id) => [encode.ping(id)]);
  }

  /** Ends the connection; pending requests reject with GUEST_CLOSED. */
  close(): void {
    this.fail(new GuestError('GUEST_CLOSED', 'envbox-guest connection closed by envbox'));
    this.stream.end();
    this.stream.destroy();
  }

  private request(op: string, frames: (id: number) => Buffer[] | AsyncIterable<Buffer>, list?: ListEntry[]): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    let produced: Buffer[] | AsyncIterable<Buffer>;
    try {
      produced = frames(id); // encoding errors (over-long path, bad root) reject before anything is sent
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const reply = new Promise<Buffer>((resolve, reject) => this.pending.set(id, { op, resolve, reject, list }));
    this.sendChain = this.sendChain.then(() => this.send(id, produced)).catch(() => {});
    return reply;
  }

  private async send(id: number, frames: Buffer[] | AsyncIterable<Buffer>): Promise<void> {
    try {
      for await (const frame of frames) {
        if (this.failure) return;
        if (!this.stream.write(frame)) await this.drained();
      }
    } catch (err) {
      // A failing source stream part-way through a WRITE leaves the helper waiting for APPEND frames that
      // never come: the connection can't go on.
      const e = err instanceof Error ? err : new Error(String(err));
      const p = this.pending.get(id);
      this.fail(new GuestError('GUEST_CLOSED', `envbox-guest connection abandoned: ${p?.op ?? 'request'} source failed: ${e.message}`, 0, { cause: e }));
      this.stream.destroy();
      p?.reject(e);
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
    });
  }

  /** Re-chunks a Readable into WRITE + APPEND frames of at most MAX_CHUNK, one chunk behind to know `more`. */
  private async *streamFrames(id: number, root: number, path: string, mode: number, source: Readable, mtimeNs?: bigint): AsyncGenerator<Buffer> {
    let held: Buffer | undefined;
    let first = true;
    const frame = (more: boolean, data: Buffer) => {
      const f = first ? encode.write(id, root, path, mode, more, data, mtimeNs) : encode.append(id, more, data);
      first = false;
      return f;
    };
    for await (const raw of source) {
      let chunk: Buffer = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as string);
      while (chunk.length) {
        if (held && held.length === MAX_CHUNK) {
          yield frame(true, held);
          held = undefined;
        }
        const room = MAX_CHUNK - (held?.length ?? 0);
        const take = chunk.subarray(0, room);
        held = held ? Buffer.concat([held, take]) : Buffer.from(take);
        chunk = chunk.subarray(take.length);
      }
    }
    yield frame(false, held ?? Buffer.alloc(0));
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.protocolFailure(err);
      return;
    }
    for (const f of frames) {
      const p = this.pending.get(f.id);
      if (!p) {
        this.protocolFailure(new ProtocolError(`reply for unknown request id ${f.id}`));
        return;
      }
      try {
        if (f.op === Op.OK) {
          if (p.list) {
            const part = decode.list(f.payload);
            p.list.push(...part.entries);
            if (part.more) continue;
          }
          this.pending.delete(f.id);
          p.resolve(f.payload);
        } else if (f.op === Op.ERR) {
          const { errno, message } = decode.err(f.payload);
          this.pending.delete(f.id);
          p.reject(new GuestError(errnoName(errno), message, errno));
        } else {
          throw new ProtocolError(`unexpected reply op 0x${f.op.toString(16)}`);
        }
      } catch (err) {
        this.protocolFailure(err);
        return;
      }
    }
  }

  private protocolFailure(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.fail(new GuestError('GUEST_PROTOCOL', `envbox-guest protocol error: ${message}`, 0, { cause: err }));
    this.stream.destroy();
  }

  private fail(err: GuestError): void {
    this.failure ??= err;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(this.failure);
  }
}
