/**
 * The slower path, for a guest where envbox-guest can't run (another architecture, a noexec mount):
 * SFTP over the agent's SSH connection for files, one shell command per batch for removes, the
 * listing and the replay. OpenSSH's sftp-server handles requests in order, so requests are sent
 * without waiting for the previous answer wherever the order is all that matters.
 */
import { randomBytes } from 'node:crypto';
import { read } from 'node:fs';
import { posix } from 'node:path';
import { promisify } from 'node:util';
import type { Client, SFTPWrapper } from 'ssh2';
import { execCapture, shellQuote } from '../ssh/exec.js';
import type { Change } from './coalesce.js';
import { GuestOpError, type FileSource, type GuestOps, type ListEntry } from './ops.js';
import { guestPathOf } from './paths.js';

const CHUNK = 256 * 1024;
const IN_FLIGHT = 8;
const readAt = promisify(read);

export async function openSftpOps(client: Client, roots: readonly string[]): Promise<GuestOps> {
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  return new SftpOps(client, sftp, roots);
}

const call = <T = void>(fn: (cb: (err: Error | undefined | null, value?: T) => void) => void) =>
  new Promise<T>((resolve, reject) =>
    fn((err, value) => (err ? reject(new GuestOpError((err as { code?: number }).code ?? 0, err.message)) : resolve(value as T))),
  );

class SftpOps implements GuestOps {
  readonly via = 'sftp' as const;
  readonly keepsMtime = false;

  constructor(
    private readonly client: Client,
    private readonly sftp: SFTPWrapper,
    private readonly roots: readonly string[],
  ) {}

  private at(root: number, rel: string): string {
    const base = this.roots[root];
    if (base === undefined) throw new GuestOpError(22, `no folder number ${root}`);
    return rel === '' ? base : guestPathOf(base, rel);
  }

  private async shell(script: string): Promise<string> {
    const r = await execCapture(this.client, script);
    if (r.code !== 0) throw new GuestOpError(5, `${r.stderr.trim() || `exit status ${r.code}`}`);
    return r.stdout;
  }

  async replay(root: number, changes: readonly Change[] | 'rescan'): Promise<number> {
    // Setting a path's times to what they already are is an IN_ATTRIB in the guest and changes
    // nothing on the host; a deleted or moved path is announced on its folder.
    const base = this.at(root, '');
    const paths = new Set<string>();
    if (changes === 'rescan') paths.add(base);
    else
      for (const c of changes) {
        const target = c.kind === 'rename' ? c.to : c.path;
        if (c.kind === 'delete' || c.kind === 'rename') paths.add(posix.dirname(this.at(root, c.path)));
        if (c.kind !== 'delete') paths.add(this.at(root, target));
      }
    const list = [...paths];
    let failed = 0;
    for (let i = 0; i < list.length; i += 200) {
      const part = list.slice(i, i + 200);
      const out = await this.shell(`for p in ${shellQuote(part)}; do touch -c -h -r "$p" "$p" 2>/dev/null || echo x; done`);
      failed += out.split('\n').filter((l) => l === 'x').length;
    }
    return failed;
  }

  async write(root: number, path: string, source: FileSource): Promise<void> {
    const target = this.at(root, path);
    const temp = posix.join(posix.dirname(target), `.envbox-tmp-${randomBytes(6).toString('hex')}`);
    const handle = await call<Buffer>((cb) => this.sftp.open(temp, 'w', { mode: 0o600 }, cb));
    try {
      let offset = 0;
      const inFlight = new Set<Promise<void>>();
      while (offset < source.size) {
        const buffer = Buffer.allocUnsafe(Math.min(CHUNK, source.size - offset));
        const { bytesRead } = await readAt(source.fd, buffer, 0, buffer.length, offset);
        if (bytesRead === 0) break; // the file shrank while we read it; the next change event sends it again
        const at = offset;
        const p = call((cb) => this.sftp.write(handle, buffer, 0, bytesRead, at, cb)).finally(() => inFlight.delete(p));
        inFlight.add(p);
        offset += bytesRead;
        if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      await call((cb) => this.sftp.fchmod(handle, source.mode & 0o7777, cb));
      const mtime = source.mtimeMs / 1000;
      await call((cb) => this.sftp.futimes(handle, mtime, mtime, cb));
    } catch (err) {
      await call((cb) => this.sftp.close(handle, cb)).catch(() => {});
      await call((cb) => this.sftp.unlink(temp, cb)).catch(() => {});
      throw err;
    }
    await call((cb) => this.sftp.close(handle, cb));
    await call((cb) => this.sftp.ext_openssh_rename(temp, target, cb));
  }

  async mkdir(root: number, path: string, mode: number): Promise<void> {
    const dir = this.at(root, path);
    try {
      await call((cb) => this.sftp.mkdir(dir, { mode: mode & 0o7777 }, cb));
    } catch {
      const st = await call<{ isDirectory(): boolean }>((cb) => this.sftp.lstat(dir, cb)).catch(() => undefined);
      if (!st) {
        await this.shell(`mkdir -p -- ${shellQuote([dir])}`);
      } else if (!st.isDirectory()) {
        await this.remove(root, [path]);
        await call((cb) => this.sftp.mkdir(dir, { mode: mode & 0o7777 }, cb));
      }
      await call((cb) => this.sftp.chmod(dir, mode & 0o7777, cb));
    }
  }

  async symlink(root: number, path: string, target: string): Promise<void> {
    const link = this.at(root, path);
    await this.remove(root, [path]);
    await call((cb) => this.sftp.symlink(target, link, cb));
  }

  async remove(root: number, paths: readonly string[]): Promise<void> {
    const full = paths.map((p) => this.at(root, p));
    for (let i = 0; i < full.length; i += 500) await this.shell(`rm -rf -- ${shellQuote(full.slice(i, i + 500))}`);
  }

  async rename(root: number, from: string, to: string): Promise<void> {
    const dest = this.at(root, to);
    await this.shell(`mkdir -p -- ${shellQuote([posix.dirname(dest)])}`);
    await call((cb) => this.sftp.ext_openssh_rename(this.at(root, from), dest, cb));
  }

  async chmod(root: number, path: string, mode: number): Promise<void> {
    await call((cb) => this.sftp.chmod(this.at(root, path), mode & 0o7777, cb));
  }

  async list(root: number): Promise<ListEntry[]> {
    const base = this.at(root, '');
    const out = await this.shell(`[ -d ${shellQuote([base])} ] || exit 0; find ${shellQuote([base])} -mindepth 1 -printf '%y\\t%m\\t%s\\t%T@\\t%P\\0'`);
    return parseFindList(out);
  }

  async ping(): Promise<void> {
    await call((cb) => this.sftp.lstat(this.roots[0] ?? '/', (err) => cb(err))).catch(() => {});
  }

  close(): void {
    this.sftp.end();
  }
}

/** `find -printf '%y\t%m\t%s\t%T@\t%P\0'` output as LIST entries (other types are left out). */
export function parseFindList(out: string): ListEntry[] {
  const entries: ListEntry[] = [];
  for (const record of out.split('\0')) {
    if (!record) continue;
    const [y, m, s, t, ...rest] = record.split('\t');
    const type = y === 'f' ? 'f' : y === 'd' ? 'd' : y === 'l' ? 'l' : undefined;
    if (!type) continue;
    entries.push({ type, mode: parseInt(m!, 8), size: Number(s), mtimeMs: Number(t) * 1000, path: rest.join('\t') });
  }
  return entries;
}
