/**
 * Which shared folders the agent itself serves: it copies a `sync` folder, and replays the host's file
 * events in a folder whose guest can't see them (`events: replayed`). Every other folder is a mount the
 * guest watches natively, or not at all. Kept apart from manager.ts so that `env up` and `env status` can
 * ask without loading the watcher.
 */
export function agentServes(folder: { mode: string; events: string }): boolean {
  return folder.mode === 'sync' || folder.events === 'replayed';
}
