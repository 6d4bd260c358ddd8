/**
 * The fast path: `envbox-guest serve [--watch] ROOT...` on one exec channel of the agent's SSH
 * connection, spoken to through GuestClient. Requests are pipelined (the helper answers in order);
 * a refused request (an errno from the guest) is a GuestOpError for that one path, anything else
 * means the channel is gone and the caller reconnects.
 */
import { createReadStream, readSync } from 'node:fs';
import type { Client, ClientChannel } from 'ssh2';
import { EventKind, Feature, GuestClient, GuestError, type GuestEvent } from '../guest/client.js';
import { shellQuote } from '../ssh/exec.js';
import type { Change } from './coalesce.js';
import { GuestOpError, type FileSource, type GuestOps, type ListEntry } from './ops.js';

/** Files up to this size are read whole and sent as one buffer; bigger ones are streamed from the fd. */
const SMALL = 1024 * 1024;
const HELLO_TIMEOUT_MS = 10_000;

export async function openHelperOps(client: Client, path: string, roots: string[], watch: boolean): Promise<GuestOps> {
  const command = shellQuote([path, 'serve', ...(watch ? ['--watch'] : []), ...roots]);
  const channel = await new Promise<ClientChannel>((resolve, reject) => client.exec(command, (err, ch) => (err ? reject(err) : resolve(ch))));
  const stderr: string[] = [];
  channel.stderr.on('data', (chunk: Buffer) => {
    stderr.push(chunk.toString());
    if (stderr.length > 20) stderr.shift();
  });
  const guest = new GuestClient(channel);
  let timer: NodeJS.Timeout | undefined;
  let features = 0;
  try {
    await Promise.race([
      guest.hello().then((hello) => (features = hello.features)),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no HELLO answer within ${HELLO_TIMEOUT_MS / 1000} s`)), HELLO_TIMEOUT_MS))),
    ]);
  } catch (err) {
    guest.close();
    const said = stderr.join('').trim().split('\n').slice(-2).join('; ');
    throw new Error(`${(err as Error).message}${said ? `: ${said}` : ''}`);
  } finally {
    clearTimeout(timer);
  }
  return new HelperOps(guest, (features & Feature.MTIME) !== 0);
}

/** A guest refusal is about one path; a closed or broken connection is not. */
async function op<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof GuestError && err.errno !== 0) throw new GuestOpError(err.errno, err.message);
    throw err;
  }
}

export function toGuestEvents(changes: readonly Change[] | 'rescan'): GuestEvent[] {
  if (changes === 'rescan') return [{ kind: EventKind.RESCAN, path: '' }];
  return changes.map((c): GuestEvent => {
    if (c.kind === 'rename') return { kind: EventKind.RENAME, path: c.path, to: c.to };
    if (c.kind === 'delete') return { kind: EventKind.DELETE, path: c.path };
    if (c.kind === 'create') return { kind: c.type === 'dir' ? EventKind.MKDIR : EventKind.CREATE, path: c.path };
    return { kind: EventKind.MODIFY, path: c.path };
  });
}

/** A file's mtime in nanoseconds, from the millisecond float fs.Stats gives (exact to the microsecond). */
const nanoseconds = (mtimeMs: number) => BigInt(Math.round(mtimeMs * 1000)) * 1000n;

class HelperOps implements GuestOps {
  readonly via = 'helper' as const;

  constructor(
    private readonly guest: GuestClient,
    /** The helper sets a written file's mtime to the host file's (an older helper leaves it at the write). */
    readonly keepsMtime: boolean,
  ) {}

  replay(root: number, changes: readonly Change[] | 'rescan'): Promise<number> {
    return op(this.guest.events(root, toGuestEvents(changes)));
  }

  async write(root: number, path: string, source: FileSource): Promise<void> {
    const mtimeNs = this.keepsMtime ? nanoseconds(source.mtimeMs) : undefined;
    if (source.size <= SMALL) {
      // A small file is read in one synchronous call: cheaper than a thread-pool round trip.
      const data = Buffer.allocUnsafe(source.size);
      let got = 0;
      while (got < source.size) {
        const bytesRead = readSync(source.fd, data, got, source.size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return op(this.guest.write(root, path, source.mode, data.subarray(0, got), mtimeNs));
    }
    // The fd stays open (the caller closes it); reading by position keeps it independent of other readers.
    const stream = createReadStream('', { fd: source.fd, autoClose: false, start: 0, highWaterMark: 1024 * 1024 });
    return op(this.guest.write(root, path, source.mode, stream, mtimeNs));
  }

  mkdir(root: number, path: string, mode: number): Promise<void> {
    return op(this.guest.mkdir(root, path, mode));
  }

  symlink(root: number, path: string, target: string): Promise<void> {
    return op(this.guest.symlink(root, path, target));
  }

  async remove(root: number, paths: readonly string[]): Promise<void> {
    await Promise.all(paths.map((p) => op(this.guest.remove(root, p))));
  }

  rename(root: number, from: string, to: string): Promise<void> {
    return op(this.guest.rename(root, from, to));
  }

  chmod(root: number, path: string, mode: number): Promise<void> {
    return op(this.guest.chmod(root, path, mode));
  }

  async list(root: number): Promise<ListEntry[]> {
    const entries = await op(this.guest.list(root, ''));
    return entries.map((e) => ({ type: e.type, mode: e.mode, size: Number(e.size), mtimeMs: Number(e.mtimeNs) / 1e6, path: e.path }));
  }

  ping(): Promise<void> {
    return op(this.guest.ping());
  }

  close(): void {
    this.guest.close();
  }
}
