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
  const dirRenames = renames.filter((r) => r.type === 'dir');
  renames = renames.filter((r) => !dirRenames.some((d) => d !== r && under(r.from, d.from) && r.to === d.to + r.from.slice(d.from.length)));
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
  const deletes = [...gone.keys()].sort();
  for (const rel of deletes) {
    if (deletes.some((d) => d !== rel && gone.get(d)!.type === 'dir' && under(rel, d))) continue;
    changes.push({ kind: 'delete', path: rel, type: gone.get(rel)!.type });
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
  // Moved directories take their known children with them; deleted ones drop them.
  for (const r of dirRenames) {
    for (const [rel, st] of [...known]) {
      if (under(rel, r.from) && !touched.has(rel)) {
        known.delete(rel);
        known.set(r.to + rel.slice(r.from.length), st);
      }
    }
  }
  for (const [rel, st] of gone) {
    if (st.type !== 'dir') continue;
    for (const k of [...known.keys()]) if (under(k, rel) && !touched.has(k)) known.delete(k);
  }
  return changes;
}

export const under = (path: string, dir: string) => path.startsWith(`${dir}/`);
const depth = (rel: string) => rel.split('/').length;

/** Orders renames so none overwrites a path another still has to move away; cycles are returned as broken. */
function orderRenames(renames: { from: string; to: string; type: EntryType }[]) {
  const pending = [...renames];
  const out: typeof renames = [];
  while (pending.length) {
    const i = pending.findIndex((r) => !pending.some((o) => o !== r && o.from === r.to));
    if (i < 0) break;
    out.push(...pending.splice(i, 1));
  }
  return { renames: out, broken: pending };
}

/** More changes than this in one folder and one batch become a single rescan of the folder (replay only). */
export const RESCAN_THRESHOLD = 64;
