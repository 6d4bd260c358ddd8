/**
 * The initial copy of a `mode: sync` folder, as a pure diff: what the host has (scanned without
 * following symlinks, ignored paths left out) against what the guest's LIST says it has.
 *
 *   guest-only path (not ignored)               removed (only the topmost of a removed tree)
 *   type differs                                removed, then created again
 *   host dir missing in the guest               mkdir (parents first); mode differs → chmod
 *   host file missing, other size, or another mtime   written
 *   same size and mtime                                skipped (chmod if the mode differs)
 *   symlinks                                    always sent (LIST does not carry targets; they are tiny)
 *
 * The helper sets a written file's mtime to the host file's, so "another mtime" is exact, in both
 * directions (a file restored with an older time is new content too). Over SFTP, or with a helper too
 * old to set it, a copy gets the guest's clock at the write: there "another mtime" means a guest copy
 * older than the host file.
 */
import type { EntryStat } from './coalesce.js';
import type { ListEntry } from './ops.js';
import { badRelPath } from './paths.js';

export interface SyncPlan {
  remove: string[];
  mkdir: { path: string; mode: number }[];
  write: string[];
  symlink: string[];
  chmod: { path: string; mode: number }[];
  /** Guest entries with a path that can't be inside the folder (never acted on). */
  rejected: string[];
}

const TYPE = { file: 'f', dir: 'd', symlink: 'l' } as const;

/** What to do to make the guest folder match the host's; `keepsMtime`: the guest's copies carry the host's mtimes. */
export function planInitialSync(
  host: ReadonlyMap<string, EntryStat>,
  guest: readonly ListEntry[],
  ignored: (rel: string, isDir: boolean) => boolean,
  keepsMtime = false,
): SyncPlan {
  const plan: SyncPlan = { remove: [], mkdir: [], write: [], symlink: [], chmod: [], rejected: [] };
  const inGuest = new Map<string, ListEntry>();
  for (const entry of guest) {
    if (badRelPath(entry.path)) plan.rejected.push(entry.path);
    else inGuest.set(entry.path, entry);
  }
  const removed: string[] = [];
  for (const [rel, entry] of [...inGuest].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const h = host.get(rel);
    if (h && TYPE[h.type] === entry.type) continue;
    if (!h && ignored(rel, entry.type === 'd')) continue;
    if (removed.some((r) => rel.startsWith(`${r}/`))) continue;
    removed.push(rel);
  }
  plan.remove = removed;
  const gone = (rel: string) => removed.some((r) => rel === r || rel.startsWith(`${r}/`));
  const entries = [...host].sort(([a], [b]) => a.split('/').length - b.split('/').length || (a < b ? -1 : 1));
  for (const [rel, st] of entries) {
    const g = gone(rel) ? undefined : inGuest.get(rel);
    const mode = st.mode & 0o7777;
    if (st.type === 'dir') {
      if (!g) plan.mkdir.push({ path: rel, mode });
      else if ((g.mode & 0o7777) !== mode) plan.chmod.push({ path: rel, mode });
    } else if (st.type === 'symlink') {
      plan.symlink.push(rel);
    } else if (!g || g.size !== st.size || (keepsMtime ? Math.abs(g.mtimeMs - st.mtimeMs) >= 1 : g.mtimeMs < Math.floor(st.mtimeMs))) {
      plan.write.push(rel);
    } else if ((g.mode & 0o7777) !== mode) {
      plan.chmod.push({ path: rel, mode });
    }
  }
  return plan;
}
