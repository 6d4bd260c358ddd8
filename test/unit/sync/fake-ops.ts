/**
 * A fake guest for the sync tests: GuestOps applied to a local folder standing in for the guest's
 * copy, with the helper's rules (paths checked, never followed out of the root, requests in order).
 * It records every call, can fail the channel on demand, and can answer LIST with hostile paths.
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { chmod, mkdir, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { read } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { Change } from '../../../src/sync/coalesce.js';
import { GuestOpError, type FileSource, type GuestOps, type ListEntry } from '../../../src/sync/ops.js';
import { checkRelPath } from '../../../src/sync/paths.js';

const readAt = promisify(read);

export class FakeOps implements GuestOps {
  readonly via = 'helper' as const;
  /** Like the helper with Feature.MTIME: a written file gets the host file's mtime. */
  readonly keepsMtime = true;
  calls: string[] = [];
  replays: { root: number; changes: readonly Change[] | 'rescan' }[] = [];
  /** Fail every request with a channel error while set (a dropped connection). */
  broken = false;
  extraList: ListEntry[] = [];
  closed = false;

  constructor(readonly roots: string[]) {}

  private at(root: number, rel: string): string {
    if (this.broken || this.closed) throw new Error('channel closed');
    checkRelPath(rel);
    return join(this.roots[root]!, rel);
  }

  private async op<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.calls.push(name);
    if (this.broken || this.closed) throw new Error('channel closed');
    try {
      return await fn();
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code) throw new GuestOpError(e.errno ?? 5, e.message);
      throw err;
    }
  }

  replay(root: number, changes: readonly Change[] | 'rescan'): Promise<number> {
    return this.op('replay', async () => {
      this.replays.push({ root, changes });
      return 0;
    });
  }

  write(root: number, path: string, source: FileSource): Promise<void> {
    return this.op(`write ${path}`, async () => {
      const data = Buffer.alloc(source.size);
      if (source.size) await readAt(source.fd, data, 0, source.size, 0);
      const target = this.at(root, path);
      await writeFile(target, data, { mode: source.mode });
      await chmod(target, source.mode);
      await utimes(target, new Date(), new Date(source.mtimeMs));
    });
  }

  mkdir(root: number, path: string, mode: number): Promise<void> {
    return this.op(`mkdir ${path}`, async () => {
      await mkdir(this.at(root, path), { recursive: true, mode });
      await chmod(this.at(root, path), mode);
    });
  }

  symlink(root: number, path: string, target: string): Promise<void> {
    return this.op(`symlink ${path}`, async () => {
      await rm(this.at(root, path), { recursive: true, force: true });
      await symlink(target, this.at(root, path));
    });
  }

  remove(root: number, paths: readonly string[]): Promise<void> {
    return this.op(`remove ${paths.join(',')}`, async () => {
      for (const p of paths) await rm(this.at(root, p), { recursive: true, force: true });
    });
  }

  rename(root: number, from: string, to: string): Promise<void> {
    return this.op(`rename ${from} ${to}`, async () => {
      await mkdir(dirname(this.at(root, to)), { recursive: true });
      await rename(this.at(root, from), this.at(root, to));
    });
  }

  chmod(root: number, path: string, mode: number): Promise<void> {
    return this.op(`chmod ${path}`, () => chmod(this.at(root, path), mode));
  }

  list(root: number): Promise<ListEntry[]> {
    return this.op('list', async () => [...walk(this.roots[root]!, ''), ...this.extraList]);
  }

  ping(): Promise<void> {
    return this.op('ping', async () => {});
  }

  close(): void {
    this.closed = true;
  }
}

function walk(base: string, prefix: string): ListEntry[] {
  const out: ListEntry[] = [];
  for (const name of readdirSync(join(base, prefix))) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(join(base, rel));
    const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'f';
    out.push({ type, mode: st.mode & 0o7777, size: st.size, mtimeMs: st.mtimeMs, path: rel });
    if (type === 'd') out.push(...walk(base, rel));
  }
  return out;
}

/** The folder as `{path: description}`: file content and mode, symlink targets, directories. */
export function snapshot(base: string, skip: (rel: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (prefix: string) => {
    for (const name of readdirSync(join(base, prefix)).sort()) {
      const rel = prefix ? `${prefix}/${name}` : name;
      if (skip(rel)) continue;
      const path = join(base, rel);
      const st = lstatSync(path);
      if (st.isSymbolicLink()) out[rel] = `-> ${readlinkSync(path)}`;
      else if (st.isDirectory()) {
        out[rel] = `dir ${(statSync(path).mode & 0o777).toString(8)}`;
        visit(rel);
      } else out[rel] = `${(st.mode & 0o777).toString(8)} ${readFileSync(path, 'utf8')}`;
    }
  };
  visit('');
  return out;
}


