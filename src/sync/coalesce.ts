/**
 * Net-change coalescing, pure. The watcher collects a burst of raw events (chokidar's add/change/
 * unlink/addDir/unlinkDir with stats) and this turns them into the smallest list of changes that
 * takes the guest from the state before the burst to the state after it:
 *
 *   create + delete            nothing
 *   delete + create (same ino)  a rename (chokidar reports renames as unlink + add)
 *   renamed directory           one rename; its children's unlink/add pairs fold into it
 *   change with the same mtime, size, inode and mode   nothing (ctime-only: e.g. the replay's own touch)
 *   delete of a directory       one delete; its children's deletes fold into it
 *   a path replaced by a new file (atomic save)        a modify
 *
 * Order of the result: renames (so nothing is deleted that moves), deletes, mkdirs (parents first),
 * file/symlink creates, modifies. A rename chain (a→b, b→c) is ordered b→c first; a cycle (a swap)
 * falls back to delete + create.
 */

export type EntryType = 'file' | 'dir' | 'symlink';

export interface EntryStat {
  type: EntryType;
  ino: number;
  size: number;
  mtimeMs: number;
  mode: number;
}

export type RawEvent = { kind: 'add' | 'change'; rel: string; stat: EntryStat } | { kind: 'unlink'; rel: string };

export type Change =
  | { kind: 'create'; path: string; type: EntryType }
  | { kind: 'modify'; path: string; type: EntryType; modeOnly?: boolean }
  | { kind: 'delete'; path: string; type: EntryType }
  | { kind: 'rename'; path: string; to: string; type: EntryType };

/** What the watcher believes exists (folder-relative path → stat), updated as batches are coalesced. */
export type Known = Map<string, EntryStat>;

/**
 * Folds `events` (in arrival order) into net changes against `known`, and updates `known` to the
 * state after them.
 */
export function coalesce(events: readonly RawEvent[], known: Known): Change[] {
  const before = new Map<string, EntryStat | undefined>();
  const after = new Map<string, EntryStat | undefined>();
  const touched = new Set<string>();
  for (const e of events) {
    if (!before.has(e.rel)) before.set(e.rel, known.get(e.rel));
    touched.add(e.rel);
    after.set(e.rel, e.kind === 'unlink' ? undefined : e.stat);
  }

  const gone = new Map<string, EntryStat>();
  const born = new Map<string, EntryStat>();
  const modified: Change[] = [];
  for (const rel of touched) {
    const b = before.get(rel);
    const a = after.get(rel);
    if (b && a && b.type === a.type && b.ino === a.ino) {
      if (a.type === 'dir') {
        if (b.mode !== a.mode) modified.push({ kind: 'modify', path: rel, type: a.type, modeOnly: true });
      } else if (b.mtimeMs !== a.mtimeMs || b.size !== a.size) {
        modified.push({ kind: 'modify', path: rel, type: a.type });
      } else if (b.mode !== a.mode) {
        modified.push({ kind: 'modify', path: rel, type: a.type, modeOnly: true });
      }
      continue;
    }
    if (b) gone.set(rel, b);
    if (a) born.set(rel, a);
  }

  // Renames: a path that went away and one that appeared with the same inode.
  const byIno = new Map<string, string[]>();
  for (const [rel, st] of gone) {
    const key = `${st.type}:${st.ino}`;
    byIno.set(key, [...(byIno.get(key) ?? []), rel]);
  }
  let renames: { from: string; to: string; type: EntryType }[] = [];
  for (const [rel, st] of born) {
    const candidates = byIno.get(`${st.type}:${st.ino}`);
    const from = candidates?.shift();
    if (from === undefined) continue;
    renames.push({ from, to: rel, type: st.type });
  }
  for (const r of renames) {
    gone.delete(r.from);
    born.delete(r.to);
    // Renaming onto an existing path replaces it: no separate delete for the old target.
    gone.delete(r.to);
  }
  // Children that moved with a renamed directory need nothing of their own.
  const allDirRenames = renames.filter((r) => r.type === 'dir');
  const dirRenames = new Map<string, string[]>();
  for (const r of allDirRenames) dirRenames.set(r.from, [...(dirRenames.get(r.from) ?? []), r.to]);
  const implied = (r: { from: string; to: string }) =>
    ancestors(r.from).some((dir) => dirRenames.get(dir)?.some((to) => r.to === to + r.from.slice(dir.length)) ?? false);
  renames = renames.filter((r) => !implied(r));
  // A file modified after its directory moved is still a modify, under its new path: kept as is.

  // Replaced in place by another file (an editor's atomic save): new content at the same path.
  for (const [rel, st] of born) {
    const old = gone.get(rel);
    if (!old || old.type !== st.type || st.type === 'dir') continue;
    gone.delete(rel);
    born.delete(rel);
    modified.push({ kind: 'modify', path: rel, type: st.type });
  }

  const ordered = orderRenames(renames);
  for (const r of ordered.broken) {
    gone.set(r.from, before.get(r.from)!);
    born.set(r.to, after.get(r.to)!);
  }

  const changes: Change[] = ordered.renames.map((r) => ({ kind: 'rename', path: r.from, to: r.to, type: r.type }));
  const goneDirs = new Set([...gone].filter(([, st]) => st.type === 'dir').map(([rel]) => rel));
  const inGoneDir = (rel: string) => ancestors(rel).some((dir) => goneDirs.has(dir));
  for (const rel of [...gone.keys()].sort()) {
    if (!inGoneDir(rel)) changes.push({ kind: 'delete', path: rel, type: gone.get(rel)!.type });
  }
  const created = [...born.entries()].sort(([x], [y]) => depth(x) - depth(y) || (x < y ? -1 : 1));
  for (const [rel, st] of created) if (st.type === 'dir') changes.push({ kind: 'create', path: rel, type: 'dir' });
  for (const [rel, st] of created) if (st.type !== 'dir') changes.push({ kind: 'create', path: rel, type: st.type });
  changes.push(...modified);

  for (const rel of touched) {
    const a = after.get(rel);
    if (a) known.set(rel, a);
    else known.delete(rel);
  }
  // Moved directories take their known children with them (a move inside one that moved with its
  // parent changes nothing more); deleted ones drop them.
  for (const r of allDirRenames) {
    if (implied(r)) continue;
    for (const [rel, st] of [...known]) {
      if (under(rel, r.from) && !touched.has(rel)) {
        known.delete(rel);
        known.set(r.to + rel.slice(r.from.length), st);
      }
    }
  }
  if (goneDirs.size) for (const k of [...known.keys()]) if (!touched.has(k) && inGoneDir(k)) known.delete(k);
  return changes;
}

export const under = (path: string, dir: string) => path.startsWith(`${dir}/`);
const depth = (rel: string) => rel.split('/').length;

/** The folders above a relative path, nearest first: a/b/c → a/b, a. */
function ancestors(rel: string): string[] {
  const out: string[] = [];
  for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) out.push(rel.slice(0, i));
  return out;
}

/**
 * Orders renames so none overwrites a path another still has to move away; cycles are returned as
 * broken. Of the renames free to go, the earliest goes first (so the order is the events' order where
 * nothing forces another): a min-heap of free positions, each rename freeing those that move onto
 * the path it leaves.
 */
function orderRenames(renames: { from: string; to: string; type: EntryType }[]) {
  const leaving = new Map<string, number>();
  const onto = new Map<string, number[]>();
  renames.forEach((r, i) => {
    leaving.set(r.from, (leaving.get(r.from) ?? 0) + 1);
    onto.set(r.to, [...(onto.get(r.to) ?? []), i]);
  });
  const heap: number[] = [];
  const push = (i: number) => {
    heap.push(i);
    for (let c = heap.length - 1, p = (c - 1) >> 1; c > 0 && heap[p]! > heap[c]!; c = p, p = (c - 1) >> 1) [heap[p], heap[c]] = [heap[c]!, heap[p]!];
  };
  const pop = () => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length) {
      heap[0] = last;
      for (let p = 0; ; ) {
        const l = 2 * p + 1;
        const m = l + 1 < heap.length && heap[l + 1]! < heap[l]! ? l + 1 : l;
        if (l >= heap.length || heap[p]! <= heap[m]!) break;
        [heap[p], heap[m]] = [heap[m]!, heap[p]!];
        p = m;
      }
    }
    return top;
  };
  renames.forEach((r, i) => (leaving.get(r.to) ?? 0) === 0 && push(i));
  const done = new Set<number>();
  const out: typeof renames = [];
  while (heap.length) {
    const i = pop();
    const r = renames[i]!;
    done.add(i);
    out.push(r);
    const left = leaving.get(r.from)! - 1;
    leaving.set(r.from, left);
    if (left === 0) for (const j of onto.get(r.from) ?? []) if (!done.has(j)) push(j);
  }
  return { renames: out, broken: renames.filter((_, i) => !done.has(i)) };
}

/** More changes than this in one folder and one batch become a single rescan of the folder (replay only). */
export const RESCAN_THRESHOLD = 64;
