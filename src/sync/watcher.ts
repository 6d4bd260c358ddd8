/**
 * Watches one host folder with chokidar and hands over coalesced batches of net changes. Raw events
 * are collected until the folder has been quiet for `quietMs` (or `maxDelayMs` after the first one,
 * so a steady stream still flows), then folded by coalesce(). The watcher never follows symlinks and
 * never descends into ignored folders. Stats are taken again with lstat rather than trusted from
 * chokidar, so a symlink is a symlink and a path gone by the time it is looked at is a delete.
 * chokidar drops a second change to one file within 50 ms of the first (an editor that writes twice,
 * a build step that rewrites its output), so every changed file is looked at again RECHECK_MS after
 * its last reported change, and a difference is reported as a change of its own.
 */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { coalesce, type Change, type EntryStat, type Known, type RawEvent } from './coalesce.js';
import { entryStat, scanHost } from './hostfs.js';
import { hostRelative } from './paths.js';

const UNLINK_HOLD_MS = 250;
/** chokidar passes on one change per file in 50 ms and drops the rest: a changed file is looked at again after that. */
const RECHECK_MS = 70;

function sameEntry(a: EntryStat | undefined, b: EntryStat): boolean {
  return a !== undefined && a.type === b.type && a.ino === b.ino && a.mtimeMs === b.mtimeMs && a.size === b.size && a.mode === b.mode;
}

export interface WatcherOptions {
  root: string;
  ignored: (rel: string, isDir: boolean) => boolean;
  onBatch(changes: Change[], since: number): void;
  onError(err: Error): void;
  quietMs?: number;
  maxDelayMs?: number;
}

export class FolderWatcher {
  readonly known: Known = new Map();
  private watcher: FSWatcher | undefined;
  private raw: RawEvent[] = [];
  private first = 0;
  private lastRaw = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain = Promise.resolve();
  private ready = false;
  private rechecks = new Map<string, NodeJS.Timeout>();

  constructor(private readonly opts: WatcherOptions) {}

  /** Resolves once the initial scan is done (every existing path is known). */
  start(): Promise<void> {
    const { root, ignored } = this.opts;
    this.watcher = watch(root, {
      followSymlinks: false,
      ignoreInitial: false,
      persistent: true,
      atomic: false,
      ignored: (path: string, stats?: { isDirectory(): boolean }) => {
        const rel = hostRelative(root, path);
        return rel !== undefined && ignored(rel, stats?.isDirectory() ?? false);
      },
    });
    for (const kind of ['add', 'addDir'] as const) this.watcher.on(kind, (path: string) => this.onRaw(path, false));
    this.watcher.on('change', (path: string) => {
      this.onRaw(path, false);
      this.recheckLater(path);
    });
    for (const kind of ['unlink', 'unlinkDir'] as const) this.watcher.on(kind, (path: string) => this.onRaw(path, true));
    this.watcher.on('error', (err) => this.opts.onError(err as Error));
    return new Promise((resolve) =>
      this.watcher!.once('ready', () => {
        void this.chain.then(() => {
          this.ready = true;
          resolve();
        });
      }),
    );
  }

  /**
   * Sends every change made before the call. chokidar may still be working through a new folder's
   * contents, so after a short settle the folder is scanned and compared with what the watcher
   * knows; whatever differs is added as if chokidar had reported it (net changes make the late
   * duplicates harmless). This is what makes `env sync --wait` exact rather than a guess.
   */
  async flush(settleMs = 30, maxMs = 1_000): Promise<void> {
    const start = Date.now();
    await new Promise((r) => setTimeout(r, settleMs));
    while (Date.now() - this.lastRaw < settleMs && Date.now() - start < maxMs) await new Promise((r) => setTimeout(r, settleMs / 2));
    await this.chain;
    const scan = await scanHost(this.opts.root, this.opts.ignored);
    const p = this.chain.then(() => {
      const known = this.pendingKnown();
      const missed: RawEvent[] = [];
      for (const rel of known.keys()) if (!scan.has(rel)) missed.push({ kind: 'unlink', rel });
      for (const [rel, st] of scan) {
        if (!sameEntry(known.get(rel), st)) missed.push({ kind: 'add', rel, stat: st });
      }
      if (missed.length && this.raw.length === 0) this.first = Date.now();
      this.raw.push(...missed);
      this.emit();
    });
    this.chain = p;
    await p;
  }

  /** What the watcher will know of one path once the collected events are folded in. */
  private pendingStat(rel: string): EntryStat | undefined {
    for (let i = this.raw.length - 1; i >= 0; i--) {
      const e = this.raw[i]!;
      if (e.rel === rel) return e.kind === 'unlink' ? undefined : e.stat;
    }
    return this.known.get(rel);
  }

  /** What the watcher will know once the collected events are folded in. */
  private pendingKnown(): Known {
    const known: Known = new Map(this.known);
    for (const e of this.raw) {
      if (e.kind === 'unlink') known.delete(e.rel);
      else known.set(e.rel, e.stat);
    }
    return known;
  }

  get collecting(): number {
    return this.raw.length;
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    for (const t of this.rechecks.values()) clearTimeout(t);
    this.rechecks.clear();
    await this.watcher?.close();
  }

  private onRaw(path: string, gone: boolean): void {
    const rel = hostRelative(this.opts.root, path);
    if (rel === undefined) return;
    this.lastRaw = Date.now();
    const seen = Date.now();
    // One lstat per event, in arrival order, so the folded state matches the order things happened.
    this.chain = this.chain.then(async () => {
      const st = gone ? undefined : await lstat(join(this.opts.root, rel)).catch(() => undefined);
      const stat = st && entryStat(st);
      const event: RawEvent = stat ? { kind: this.known.has(rel) ? 'change' : 'add', rel, stat } : { kind: 'unlink', rel };
      if (!this.ready) {
        if (event.kind === 'unlink') this.known.delete(rel);
        else this.known.set(rel, event.stat);
        return;
      }
      if (this.raw.length === 0) this.first = seen;
      this.raw.push(event);
      this.schedule();
    });
  }

  /** Looks at a changed file again once chokidar's 50 ms would have swallowed a second change. */
  private recheckLater(path: string): void {
    const rel = hostRelative(this.opts.root, path);
    if (rel === undefined) return;
    clearTimeout(this.rechecks.get(rel));
    const timer = setTimeout(() => {
      this.rechecks.delete(rel);
      this.chain = this.chain.then(async () => {
        if (!this.ready) return;
        const st = await lstat(join(this.opts.root, rel)).catch(() => undefined);
        const now = st && entryStat(st);
        const was = this.pendingStat(rel);
        // A file gone meanwhile is chokidar's to report (its unlink is not throttled).
        if (!now || sameEntry(was, now)) return;
        if (this.raw.length === 0) this.first = Date.now();
        this.raw.push({ kind: was ? 'change' : 'add', rel, stat: now });
        this.schedule();
      });
    }, RECHECK_MS);
    timer.unref();
    this.rechecks.set(rel, timer);
  }

  private schedule(): void {
    const quiet = this.opts.quietMs ?? 15;
    const max = this.opts.maxDelayMs ?? 80;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(quiet, this.first + max - Date.now()));
    this.timer = setTimeout(() => void this.chain.then(() => this.emit(true)), wait);
  }

  /**
   * A delete whose inode has not reappeared yet may be the first half of a rename that chokidar
   * reports a little later (a busy host spreads a directory move over more than one batch): such a
   * batch is held up to UNLINK_HOLD_MS so the rename is sent as one, not as a delete and a copy.
   */
  private waitingForRename(): boolean {
    if (Date.now() - this.first >= UNLINK_HOLD_MS) return false;
    const added = new Set(this.raw.flatMap((e) => (e.kind === 'unlink' ? [] : [`${e.stat.type}:${e.stat.ino}`])));
    return this.raw.some((e) => {
      if (e.kind !== 'unlink') return false;
      const st = this.known.get(e.rel);
      return st !== undefined && !added.has(`${st.type}:${st.ino}`);
    });
  }

  private emit(timed = false): void {
    clearTimeout(this.timer);
    if (this.raw.length === 0) return;
    if (timed && this.waitingForRename()) {
      this.timer = setTimeout(() => void this.chain.then(() => this.emit(true)), 25);
      return;
    }
    const raw = this.raw;
    const since = this.first;
    this.raw = [];
    const changes = coalesce(raw, this.known);
    if (changes.length) this.opts.onBatch(changes, since);
  }
}
