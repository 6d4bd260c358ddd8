/**
 * What the sync and the replay need from the guest, whichever way it is reached: the envbox-guest
 * helper over one exec channel (fast, pipelined, inotify replay) or, when the helper can't run there,
 * SFTP plus a few shell commands (slower; replay by touching paths). Paths are root-relative and
 * checked (paths.ts) before they are sent.
 */
import type { Change } from './coalesce.js';

export interface ListEntry {
  type: 'f' | 'd' | 'l';
  mode: number;
  size: number;
  /** Nanoseconds since the epoch, as a number (sub-µs precision is lost, which the diff never needs). */
  mtimeMs: number;
  path: string;
}

/** A host file to copy: an fd opened with O_NOFOLLOW (the caller closes it), its size, mode and mtime. */
export interface FileSource {
  fd: number;
  size: number;
  mode: number;
  mtimeMs: number;
}

/** An answer from the guest that says this one operation failed (the channel itself is fine). */
export class GuestOpError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

export interface GuestOps {
  /** How the guest is reached, for status and logs. */
  readonly via: 'helper' | 'sftp';
  /** A written file gets the host file's mtime, so a later comparison can ask for the same mtime (as rsync's quick check). */
  readonly keepsMtime: boolean;
  /** Makes guest watchers see these host changes on a mounted folder; resolves with how many paths failed. */
  replay(root: number, changes: readonly Change[] | 'rescan'): Promise<number>;
  write(root: number, path: string, source: FileSource): Promise<void>;
  mkdir(root: number, path: string, mode: number): Promise<void>;
  symlink(root: number, path: string, target: string): Promise<void>;
  remove(root: number, paths: readonly string[]): Promise<void>;
  rename(root: number, from: string, to: string): Promise<void>;
  chmod(root: number, path: string, mode: number): Promise<void>;
  list(root: number): Promise<ListEntry[]>;
  /** Resolves once everything sent before it is done in the guest. */
  ping(): Promise<void>;
  close(): void;
}
