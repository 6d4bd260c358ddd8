/**
 * Applying host changes to a `mode: sync` folder, and its initial copy. Requests are pipelined
 * within each phase (the guest runs them in order); phases run one after the other because each
 * depends on the one before (a directory exists before files are written into it).
 */
import type { Change } from './coalesce.js';
import { HostFolder, scanHost } from './hostfs.js';
import { GuestOpError, type GuestOps } from './ops.js';
import { planInitialSync } from './plan.js';

const WINDOW = 32;

export interface ApplyReport {
  done: number;
  failed: { path: string; error: string }[];
}

/** Runs `fn` over `items`, at most WINDOW at once; per-item guest errors are collected, channel errors thrown. */
async function pipelined<T>(items: readonly T[], name: (item: T) => string, fn: (item: T) => Promise<void>, report: ApplyReport, onDone?: () => void): Promise<void> {
  let next = 0;
  let fatal: Error | undefined;
  const worker = async () => {
    while (next < items.length && !fatal) {
      const item = items[next++]!;
      try {
        await fn(item);
        report.done++;
      } catch (err) {
        if (err instanceof GuestOpError || (err as NodeJS.ErrnoException).code === 'EACCES') report.failed.push({ path: name(item), error: (err as Error).message });
        else fatal ??= err as Error;
      }
      onDone?.();
    }
  };
  await Promise.all(Array.from({ length: Math.min(WINDOW, items.length) }, worker));
  if (fatal) throw fatal;
}

export class SyncFolder {
  readonly host: HostFolder;

  constructor(
    readonly root: number,
    hostRoot: string,
    private readonly ignored: (rel: string, isDir: boolean) => boolean,
  ) {
    this.host = new HostFolder(hostRoot);
  }

  /** Copies a host file, folder or symlink as it is now; a path gone since the event needs nothing (its delete follows). */
  private async send(ops: GuestOps, rel: string): Promise<void> {
    const entry = await this.host.entry(rel);
    if (!entry) return;
    if (entry.type === 'symlink') return ops.symlink(this.root, rel, entry.target);
    if (entry.type === 'dir') return ops.mkdir(this.root, rel, entry.mode);
    try {
      await ops.write(this.root, rel, entry.file);
    } finally {
      await entry.file.close();
    }
  }

  async apply(ops: GuestOps, changes: readonly Change[]): Promise<ApplyReport> {
    const report: ApplyReport = { done: 0, failed: [] };
    this.host.fresh();
    for (const c of changes) {
      if (c.kind !== 'rename') continue;
      try {
        await ops.rename(this.root, c.path, c.to);
        report.done++;
      } catch (err) {
        if (!(err instanceof GuestOpError)) throw err;
        // The source is not in the guest (it was never synced, or ignored): copy the result instead.
        await this.send(ops, c.to).catch(() => report.failed.push({ path: c.to, error: (err as Error).message }));
      }
    }
    const deletes = changes.filter((c) => c.kind === 'delete').map((c) => c.path);
    if (deletes.length) {
      await ops.remove(this.root, deletes);
      report.done += deletes.length;
    }
    const dirs = changes.filter((c) => c.kind === 'create' && c.type === 'dir');
    await pipelined(dirs, (c) => c.path, (c) => this.send(ops, c.path), report);
    const files = changes.filter((c) => (c.kind === 'create' && c.type !== 'dir') || (c.kind === 'modify' && !c.modeOnly));
    await pipelined(files, (c) => c.path, (c) => this.send(ops, c.path), report);
    const modes = changes.filter((c) => c.kind === 'modify' && c.modeOnly);
    await pipelined(
      modes,
      (c) => c.path,
      async (c) => {
        const st = await this.host.stat(c.path);
        if (st && st.type !== 'symlink') await ops.chmod(this.root, c.path, st.mode);
      },
      report,
    );
    return report;
  }

  /** The initial copy: scan, LIST, diff, then remove/mkdir/write/symlink/chmod. */
  async initial(ops: GuestOps, progress: (done: number, total: number) => void): Promise<ApplyReport & { rejected: string[]; skipped: number }> {
    this.host.fresh();
    const [hostTree, guestTree] = await Promise.all([scanHost(this.host.root, this.ignored), ops.list(this.root)]);
    const plan = planInitialSync(hostTree, guestTree, this.ignored, ops.keepsMtime);
    const report: ApplyReport = { done: 0, failed: [] };
    const total = plan.remove.length + plan.mkdir.length + plan.write.length + plan.symlink.length + plan.chmod.length;
    let done = 0;
    const tick = () => progress(++done, total);
    if (plan.remove.length) {
      await ops.remove(this.root, plan.remove);
      for (const _ of plan.remove) tick();
    }
    // mkdir requests go out in order, parents first: the guest creates them in that order.
    await pipelined(plan.mkdir, (d) => d.path, (d) => ops.mkdir(this.root, d.path, d.mode), report, tick);
    await pipelined(plan.write, (p) => p, (p) => this.send(ops, p), report, tick);
    await pipelined(plan.symlink, (p) => p, (p) => this.send(ops, p), report, tick);
    await pipelined(plan.chmod, (c) => c.path, (c) => ops.chmod(this.root, c.path, c.mode), report, tick);
    return { ...report, rejected: plan.rejected, skipped: hostTree.size - plan.mkdir.length - plan.write.length - plan.symlink.length };
  }
}
