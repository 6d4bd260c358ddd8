/**
 * The agent's folder sync and event replay, for every folder that needs one:
 *
 *   events replayed   a mounted folder whose guest can't see host inotify (VMs, remote hosts), or
 *                     `events: on`: host changes are watched, coalesced and replayed in the guest so
 *                     its watchers react. More than RESCAN_THRESHOLD changes in one batch become one
 *                     RESCAN of the folder (the guest announces the folder itself changed).
 *   mode: sync        the folder is copied at every (re)connect (a LIST diff, so only what differs),
 *                     then every host change is propagated; the guest's own changes are not copied back.
 *
 * Each folder has an acknowledged queue (queue.ts): a batch leaves it only once the guest has
 * answered, and batches not answered when the connection dropped are sent again after it is back.
 * `wait()` is the "synced" barrier behind `env sync --wait`.
 */
import type { Client } from 'ssh2';
import { EnvboxError } from '../util/errors.js';
import type { EmitEvent } from '../agent/events.js';
import { RESCAN_THRESHOLD, type Change } from './coalesce.js';
import { SyncFolder } from './folder.js';
import type { GuestOps } from './ops.js';
import { DEFAULT_IGNORE, ignoreMatcher } from './paths.js';
import { AckQueue } from './queue.js';
import { agentServes } from './served.js';
import { FolderWatcher } from './watcher.js';

export type EventsMode = 'native' | 'replayed' | 'off';

export interface FolderSpec {
  host: string;
  guest: string;
  mode: 'mount' | 'sync';
  events: EventsMode;
  ignore: string[];
}

export type FolderState = 'native' | 'off' | 'starting' | 'waiting for the guest' | 'copying' | 'watching' | 'synced';

export interface FolderStatus {
  host: string;
  guest: string;
  mode: 'mount' | 'sync';
  events: EventsMode;
  state: FolderState;
  /** Batches not yet acknowledged by the guest, plus changes still being collected. */
  pending: number;
  /** How long the oldest unacknowledged batch has waited, ms. */
  lagMs: number;
  /** Host event → guest acknowledgement of the last batch, ms. */
  lastLagMs: number | null;
  /** How the guest is reached: the envbox-guest helper, or the slower SFTP/shell path. */
  via: 'helper' | 'sftp' | null;
  failed: number;
  lastProblem?: string;
}

/** Opens the channel to the guest for these guest roots: the helper when it runs, else the fallback. */
export type OpenOps = (client: Client, roots: string[], watch: boolean) => Promise<GuestOps>;

type Item = Change[] | 'rescan';

interface Active {
  spec: FolderSpec;
  root: number;
  watcher: FolderWatcher;
  queue: AckQueue<Item>;
  sync?: SyncFolder;
  state: FolderState;
  failed: number;
  lastProblem?: string;
}

export class FolderSyncs {
  private readonly active: Active[] = [];
  private ops: GuestOps | undefined;
  private generation = 0;
  private attached: Promise<void> | undefined;
  private attachedWaiters: (() => void)[] = [];
  private closed = false;
  private client: Client | undefined;

  constructor(
    private readonly folders: readonly FolderSpec[],
    private readonly opts: { openOps: OpenOps; emit: EmitEvent },
  ) {}

  /** Starts the watchers (before the guest is reached: changes made meanwhile are queued). */
  async start(): Promise<void> {
    for (const spec of this.folders) {
      if (!agentServes(spec)) continue;
      const ignored = ignoreMatcher([...DEFAULT_IGNORE, ...spec.ignore]);
      const root = this.active.length;
      const entry: Active = {
        spec,
        root,
        state: 'starting',
        failed: 0,
        sync: spec.mode === 'sync' ? new SyncFolder(root, spec.host, ignored) : undefined,
        watcher: new FolderWatcher({
          root: spec.host,
          ignored,
          onBatch: (changes, since) => this.onBatch(entry, changes, since),
          onError: (err) => this.problem(entry, `watching ${spec.host}: ${err.message}`),
        }),
        queue: new AckQueue<Item>({
          window: spec.mode === 'sync' ? 1 : 4,
          onError: (err) => this.problem(entry, `${spec.mode === 'sync' ? 'copying to' : 'replaying in'} ${spec.guest}: ${err.message}`),
          onDown: (err) => this.down(err),
        }),
      };
      this.active.push(entry);
    }
    await Promise.all(this.active.map((a) => a.watcher.start()));
    for (const a of this.active) a.state = 'waiting for the guest';
  }

  get needed(): boolean {
    return this.active.length > 0;
  }

  /** A (new) SSH connection: open the channel, copy sync folders, then let the queues flow. */
  attach(client: Client): Promise<void> {
    if (!this.active.length || this.closed) return Promise.resolve();
    const generation = ++this.generation;
    this.client = client;
    const run = (async () => {
      const roots = this.active.map((a) => a.spec.guest);
      const ops = await this.opts.openOps(client, roots, this.active.some((a) => a.spec.events === 'replayed'));
      if (generation !== this.generation) return ops.close();
      this.ops = ops;
      for (const a of this.active) {
        if (!a.sync) continue;
        a.state = 'copying';
        const started = Date.now();
        let last = 0;
        const result = await a.sync.initial(ops, (done, total) => {
          if (Date.now() - last < 250 && done < total) return;
          last = Date.now();
          this.opts.emit('sync-progress', `copying ${a.spec.host} to the guest: ${done}/${total}`, { folder: a.spec.guest, done, total });
        });
        for (const f of result.failed.slice(0, 20)) this.problem(a, `could not copy ${f.path} to ${a.spec.guest}: ${f.error}`);
        if (result.rejected.length) this.problem(a, `the guest listed ${result.rejected.length} path(s) that can't be inside ${a.spec.guest} (e.g. ${JSON.stringify(result.rejected[0])}); ignored`);
        a.failed += result.failed.length;
        this.opts.emit(
          'sync-ready',
          `${a.spec.host} → ${a.spec.guest}: ${result.done} copied or updated, ${result.skipped} already current (${((Date.now() - started) / 1000).toFixed(1)}s, via ${ops.via})`,
          { folder: a.spec.guest, done: result.done, skipped: result.skipped, failed: result.failed.length, via: ops.via },
        );
      }
      for (const a of this.active) {
        a.state = a.sync ? 'synced' : 'watching';
        a.queue.resume((item) => this.sendItem(a, item));
      }
    })();
    this.attached = run;
    run.then(
      () => {
        const waiters = this.attachedWaiters;
        this.attachedWaiters = [];
        for (const w of waiters) w();
      },
      (err: Error) => {
        if (generation === this.generation) this.down(err);
      },
    );
    return run.catch(() => {});
  }

  /** The connection dropped: queues keep what was not acknowledged and wait for the next attach. */
  detach(): void {
    this.generation++;
    this.client = undefined;
    this.attached = undefined;
    this.ops?.close();
    this.ops = undefined;
    for (const a of this.active) {
      a.queue.pause();
      if (a.state !== 'native' && a.state !== 'off') a.state = 'waiting for the guest';
    }
  }

  status(): FolderStatus[] {
    return this.folders.map((spec) => {
      const a = this.active.find((x) => x.spec === spec);
      if (!a)
        return { host: spec.host, guest: spec.guest, mode: spec.mode, events: spec.events, state: spec.events === 'off' ? 'off' : 'native', pending: 0, lagMs: 0, lastLagMs: null, via: null, failed: 0 };
      return {
        host: spec.host,
        guest: spec.guest,
        mode: spec.mode,
        events: spec.events,
        state: a.state,
        pending: a.queue.pending + a.watcher.collecting,
        lagMs: a.queue.lagMs(),
        lastLagMs: a.queue.lastLagMs ?? null,
        via: this.ops?.via ?? null,
        failed: a.failed,
        lastProblem: a.lastProblem,
      };
    });
  }

  /**
   * The barrier: resolves once every host change made before the call is in the guest (collected,
   * sent, acknowledged, and a PING answered behind it).
   */
  async wait(timeoutMs: number): Promise<{ folders: FolderStatus[]; waitedMs: number }> {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new EnvboxError('SYNC_TIMEOUT', `folders are not in sync after ${timeoutMs / 1000} s (${this.status().map((s) => `${s.guest}: ${s.state}, ${s.pending} pending`).join('; ')})`, {
              hint: 'env logs shows why; env sync --status shows each folder',
            }),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.barrier(), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return { folders: this.status(), waitedMs: Date.now() - started };
  }

  private async barrier(): Promise<void> {
    if (!this.active.length) return;
    for (;;) {
      if (!this.attached) await new Promise<void>((resolve) => this.attachedWaiters.push(resolve));
      await this.attached;
      if (this.ops) break;
    }
    await Promise.all(this.active.map((a) => a.watcher.flush()));
    await Promise.all(this.active.map((a) => a.queue.drained()));
    const ops = this.ops;
    if (!ops) return this.barrier();
    await ops.ping();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.detach();
    await Promise.all(this.active.map((a) => a.watcher.close()));
  }

  private onBatch(a: Active, changes: Change[], since: number): void {
    if (a.sync) return a.queue.push(changes, since);
    a.queue.push(changes.length > RESCAN_THRESHOLD ? 'rescan' : changes, since);
  }

  private async sendItem(a: Active, item: Item): Promise<void> {
    const ops = this.ops;
    if (!ops) throw new Error('the guest is not connected');
    if (a.sync) {
      const report = await a.sync.apply(ops, item as Change[]);
      a.failed += report.failed.length;
      for (const f of report.failed.slice(0, 20)) this.problem(a, `could not copy ${f.path} to ${a.spec.guest}: ${f.error}`);
      return;
    }
    const failed = await ops.replay(a.root, item);
    // A path deleted again on the host before the replay counts as failed; that is not a problem.
    if (failed > 0 && item !== 'rescan' && failed === item.length && item.every((c) => c.kind !== 'delete')) a.failed += failed;
  }

  private problem(a: Active, message: string): void {
    a.lastProblem = message;
    this.opts.emit('sync-problem', message, { folder: a.spec.guest });
  }

  private down(err: Error): void {
    if (this.closed) return;
    this.opts.emit('sync-problem', `the channel to the guest failed (${err.message}); unacknowledged changes are sent again when it is back`);
    // The SSH connection may still be fine (only the helper went): open a new channel on it.
    const client = this.client;
    this.detach();
    if (client)
      setTimeout(() => {
        if (!this.closed && this.client === undefined && (client as unknown as { _sock?: { destroyed?: boolean } })._sock?.destroyed !== true) void this.attach(client);
      }, 1_000).unref();
  }
}
