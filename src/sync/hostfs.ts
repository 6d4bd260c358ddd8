/**
 * Reading the host side of a folder without ever leaving it: scans use lstat and never descend
 * into symlinks, files are opened with O_NOFOLLOW after checking that their parent folder really
 * is inside the folder (a parent swapped for a symlink between the event and the read is refused).
 */
import { closeSync, constants, fstatSync, openSync, realpathSync, type Stats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { EntryStat, EntryType } from './coalesce.js';
import type { FileSource } from './ops.js';

export function entryStat(st: Stats): EntryStat | undefined {
  const type: EntryType | undefined = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : undefined;
  if (!type) return undefined; // sockets, fifos, devices are not synced
  return { type, ino: st.ino, size: type === 'dir' ? 0 : st.size, mtimeMs: st.mtimeMs, mode: st.mode & 0o7777 };
}

/** Every entry under `root` (folder-relative), skipping ignored paths and never following symlinks. */
export async function scanHost(root: string, ignored: (rel: string, isDir: boolean) => boolean): Promise<Map<string, EntryStat>> {
  const found = new Map<string, EntryStat>();
  const walk = async (dir: string, prefix: string): Promise<void> => {
    const names = await readdir(dir).catch(() => [] as string[]);
    await Promise.all(
      names.map(async (name) => {
        const rel = prefix ? `${prefix}/${name}` : name;
        const st = await lstat(join(dir, name)).catch(() => undefined);
        const entry = st && entryStat(st);
        if (!entry || ignored(rel, entry.type === 'dir')) return;
        found.set(rel, entry);
        if (entry.type === 'dir') await walk(join(dir, name), rel);
      }),
    );
  };
  await walk(root, '');
  return found;
}

/** What a host path is right now, ready to copy: a regular file (open), a folder, or a symlink. */
export type HostEntry =
  | { type: 'file'; file: FileSource & { close(): Promise<void> } }
  | { type: 'dir'; mode: number }
  | { type: 'symlink'; target: string };

/**
 * One project folder on the host, read for copying. A batch reads many small files, so this uses
 * the synchronous calls: each is a few microseconds on a local disk, where a promise per call cost
 * the agent more than the copy itself (a thread-pool round trip, a promise and its garbage).
 */
export class HostFolder {
  private real: string | undefined;
  /** Parent folders found inside the folder since the last fresh(): one realpath per folder per batch. */
  private parents = new Map<string, string>();

  constructor(readonly root: string) {}

  /** Starts a batch: parent folders are looked at again (one may have been swapped for a symlink since). */
  fresh(): void {
    this.parents.clear();
  }

  /** The host path of `rel`, after checking that its parent folder really is inside the folder; undefined when the parent is gone. */
  private inside(rel: string): string | undefined {
    this.real ??= realpathSync(this.root);
    const path = join(this.root, rel);
    const dir = dirname(path);
    let real = this.parents.get(dir);
    if (real === undefined) {
      try {
        real = realpathSync(dir);
      } catch (err) {
        if (gone(err)) return undefined;
        throw err;
      }
      this.parents.set(dir, real);
    }
    if (real !== this.real && !real.startsWith(`${this.real}/`)) {
      throw new Error(`${path} is reached through a symlink that leads out of the folder; envbox does not follow it`);
    }
    return path;
  }

  /**
   * Opens what is at `rel` for copying, with one open (O_NOFOLLOW) and one fstat: a regular file
   * comes back open, a folder as its mode, a symlink as its target; undefined when it is gone or is
   * something else (a socket, a fifo, a device).
   */
  async entry(rel: string): Promise<HostEntry | undefined> {
    const path = this.inside(rel);
    if (path === undefined) return undefined;
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
        const target = await readlink(path).catch(() => undefined);
        return target === undefined ? undefined : { type: 'symlink', target };
      }
      if (gone(err) || (err as NodeJS.ErrnoException).code === 'ENXIO') return undefined;
      throw err;
    }
    const st = fstatSync(fd);
    if (!st.isFile()) {
      closeSync(fd);
      return st.isDirectory() ? { type: 'dir', mode: st.mode & 0o7777 } : undefined;
    }
    let open = true;
    const close = async () => {
      if (open) closeSync(fd);
      open = false;
    };
    return { type: 'file', file: { fd, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, close } };
  }

  async stat(rel: string): Promise<EntryStat | undefined> {
    const path = this.inside(rel);
    const st = path === undefined ? undefined : await lstat(path).catch(() => undefined);
    return st && entryStat(st);
  }
}

const gone = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');
