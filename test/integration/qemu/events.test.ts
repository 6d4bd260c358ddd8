import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, mkdtemp, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestClient, type GuestEvent } from '../../../src/guest/client.js';
import { EventKind, Feature } from '../../../src/guest/protocol.js';
import { nativeHelperPath } from '../../../src/native/locate.js';
import { ROOT, env as runEnv } from '../../helpers/cli.js';

// One real VM (QEMU, TCG here) with the project shared over 9p: envbox-guest is installed as env up will
// install it, `inotifywait -m -r` watches the shared folder in the guest, and each host change followed by
// its EVENTS replay must give the inotify events docs/events.md lists. A second root outside the share
// checks sync-mode requests the same way. The guest never gets outbound network.

const NAME = 'it-events';
const HELPER = nativeHelperPath('envbox-guest');
const GUEST_HELPER = '/usr/local/lib/envbox/envbox-guest';
const SHARED = '/home/dev/project/w';
const SYNCED = '/home/dev/synced';

let scratch: string;
let project: string;
let sshConfig: string;
const xdg = () => ({ XDG_STATE_HOME: join(scratch, 'state') });
const env = (args: string[]) => runEnv(args, { cwd: project, env: xdg() });
const children: ChildProcessWithoutNullStreams[] = [];
/** Reading a folder (inotifywait -r adding watches, the helper pinning new folders): noise here. */
const READING_FOLDER = /^(OPEN|ACCESS|CLOSE_NOWRITE)\S*,ISDIR /;

function ssh(command: string): ChildProcessWithoutNullStreams {
  const child = spawn('ssh', ['-F', sshConfig, '-T', NAME, command]);
  children.push(child);
  return child;
}
async function guestRun(script: string): Promise<string> {
  const r = await env(['exec', '--', 'sh', '-c', script]);
  expect(r.code, `${script}\n${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

/** `inotifywait -m -r` in the guest on a folder; lines "EVENTS path-relative-to-it". */
class GuestWatcher {
  lines: string[] = [];
  private waiters: (() => void)[] = [];
  private constructor(
    readonly child: ChildProcessWithoutNullStreams,
    dir: string,
  ) {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const l of parts) this.lines.push(l.replace(`${dir}/`, ' ').replace(/ {2}/, ' ').replace(/\.envbox-tmp-[A-Za-z0-9]{6}/g, 'TMP'));
      for (const w of this.waiters) w();
    });
  }
  static async start(dir: string): Promise<GuestWatcher> {
    const child = ssh(`exec inotifywait -m -r --format '%e %w%f' ${dir}`);
    const w = new GuestWatcher(child, dir);
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('Watches established')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`inotifywait ended (${code}): ${err}`)));
    });
    return w;
  }
  /** Resolves once a line matches (rejects after 60 s: TCG on a loaded host is slow, not that slow). */
  until(re: RegExp): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!this.lines.some((l) => re.test(l))) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      const timer = setTimeout(() => reject(new Error(`no ${re} in:\n${this.lines.join('\n')}`)), 60_000);
      this.waiters.push(check);
      check();
    });
  }
}

const CHOKIDAR_SCRIPT = `
import { watch } from 'chokidar';
import { relative } from 'node:path';
const dir = process.argv[2];
const w = watch(dir, { ignoreInitial: true });
w.on('all', (event, path) => console.log(event + ' ' + relative(dir, path)));
w.on('ready', () => console.error('ready'));
`;

/** chokidar (4, defaults: atomic, no polling) under Node in the guest; lines "event path". */
class ChokidarWatcher {
  lines: string[] = [];
  private waiters: (() => void)[] = [];
  static async start(dir: string): Promise<ChokidarWatcher> {
    const w = new ChokidarWatcher();
    const child = ssh(`exec ~/project/tools/node ~/project/tools/watch.mjs ${dir}`);
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      w.lines.push(...parts);
      for (const f of w.waiters) f();
    });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('ready')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`chokidar ended (${code}): ${err}`)));
    });
    return w;
  }
  /** Resolves with the lines once every one of `want` has arrived (rejects after 60 s). */
  saw(want: string[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!want.every((l) => this.lines.includes(l))) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((f) => f !== check);
        resolve(this.lines);
      };
      const timer = setTimeout(() => reject(new Error(`chokidar: wanted ${want.join(', ')}; saw:\n${this.lines.join('\n')}`)), 60_000);
      this.waiters.push(check);
      check();
    });
  }
}

describe('host file events replayed in a QEMU guest', () => {
  let guest: GuestClient;
  let watcher: GuestWatcher;
  let synced: GuestWatcher;
  let chokidar: ChokidarWatcher;
  let fence = 0;
  const host = (p: string) => join(project, 'w', p);

  /** Replays a batch in the shared root, then a fence, and returns the watcher's lines in between. */
  let probes = 0;
  /**
   * chokidar reports a new folder a moment before it watches it (longer in a slow guest): a file is
   * replayed in `dir` until chokidar has heard it, as a watcher running for a while would have. Each
   * call uses a new name, so a retried test never counts an earlier attempt's line.
   */
  async function untilWatched(dir: string): Promise<void> {
    const probe = `${dir}/probe${++probes}`;
    await writeFile(host(probe), '');
    for (let i = 0; i < 30 && !chokidar.lines.includes(`add ${probe}`); i++) {
      await replay([{ kind: EventKind.CREATE, path: probe }]);
      for (let t = 0; t < 20 && !chokidar.lines.includes(`add ${probe}`); t++) await sleep(50);
    }
    await chokidar.saw([`add ${probe}`]);
  }

  async function replay(batch: GuestEvent[]): Promise<{ failed: number; lines: string[] }> {
    const marker = `.fence${++fence}`;
    await writeFile(host(marker), '');
    watcher.lines = [];
    const started = performance.now();
    const failed = await guest.events(0, batch);
    const ms = performance.now() - started;
    await guest.events(0, [{ kind: EventKind.CREATE, path: marker }]);
    await watcher.until(new RegExp(`MOVED_TO ${marker.replace('.', '\\.')}$`));
    await unlink(host(marker));
    const lines = watcher.lines.slice(0, watcher.lines.indexOf(`MOVED_FROM ${marker}`)).filter((l) => !READING_FOLDER.test(l));
    console.log(`replay of ${batch.length} (${[...new Set(batch.map((e) => e.kind))].join(',')}): ${ms.toFixed(1)} ms`, lines.slice(0, 20));
    return { failed, lines };
  }

  beforeAll(async () => {
    if (!HELPER) throw new Error('native/build/envbox-guest is missing: run npm run build');
    scratch = await mkdtemp(join(tmpdir(), 'envbox-it-events-'));
    project = join(scratch, 'project');
    await mkdir(join(project, 'w'), { recursive: true });
    // events: off: this test replays by hand; the agent replaying the same changes would double every event
    await writeFile(
      join(project, 'Envfile'),
      [`name: ${NAME}`, 'provider: vm', 'cpus: 2', 'memory: 1GiB', 'network: { outbound: false }', 'folders:', '  - { host: ., guest: /home/dev/project, events: off }', ''].join('\n'),
    );
    await copyFile(HELPER, join(project, 'envbox-guest'));
    // The image has no Node: the host's (glibc, like the guest's) and envbox's own chokidar, outside w/.
    await mkdir(join(project, 'tools/node_modules'), { recursive: true });
    await copyFile(process.execPath, join(project, 'tools/node'));
    await chmod(join(project, 'tools/node'), 0o755);
    for (const pkg of ['chokidar', 'readdirp']) await cp(join(ROOT, 'node_modules', pkg), join(project, 'tools/node_modules', pkg), { recursive: true });
    await writeFile(join(project, 'tools/watch.mjs'), CHOKIDAR_SCRIPT);
    const up = await env(['up']);
    expect(up.code, up.stderr).toBe(0);
    sshConfig = join(scratch, 'ssh_config');
    const cfg = await env(['ssh-config']);
    expect(cfg.code, cfg.stderr).toBe(0);
    await writeFile(sshConfig, cfg.stdout);
    // As env up installs it: root-owned, outside the shared folder.
    await guestRun(`sudo install -D -m 0755 -o root -g root ~/project/envbox-guest ${GUEST_HELPER} && mkdir -p ${SYNCED}`);
    await rm(join(project, 'envbox-guest'));
    const served = ssh(`exec ${GUEST_HELPER} serve --watch ${SHARED} ${SYNCED}`);
    served.stderr.on('data', (d: Buffer) => process.stderr.write(`envbox-guest: ${d.toString()}`));
    guest = new GuestClient(Duplex.from({ readable: served.stdout, writable: served.stdin }));
    // The helper must hold the shared folders before watchers start (docs/events.md, "pinned folders").
    expect(await guest.hello()).toEqual({ version: 1, features: Feature.WATCH | Feature.MTIME, machine: 'x86_64' });
    watcher = await GuestWatcher.start(SHARED);
    chokidar = await ChokidarWatcher.start(SHARED);
    synced = await GuestWatcher.start(SYNCED);
  });

  afterAll(async () => {
    guest?.close();
    if (!scratch) return;
    for (const c of children) if (c.exitCode === null) c.kill();
    const status = await env(['status', '--json']).catch(() => undefined);
    const id = status?.code === 0 ? (JSON.parse(status.stdout) as { env: { id: string } }).env.id : undefined;
    const pidFile = id ? join(scratch, 'state', 'envbox', 'envs', id, 'qemu', 'qemu.pid') : undefined;
    const pid = pidFile && existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : undefined;
    await env(['destroy', '-f']);
    // Only the QEMU this test started, and only if destroy left it behind.
    if (pid && existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu-system')) process.kill(pid, 'SIGKILL');
    // A destroy that failed can leave the idmapped view of the project mounted: never let rm walk into it.
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[4] ?? '')
      .filter((p) => p.startsWith(`${scratch}/`))
      .reverse();
    for (const m of mounts) execFileSync('umount', ['-l', m]);
    await rm(scratch, { recursive: true, force: true });
  });

  it('runs in the guest', async () => {
    expect(await guestRun(`${GUEST_HELPER} --version`)).toBe('envbox-guest 1');
  });

  it('MODIFY: a host write is invisible to guest inotify; the replay is one IN_MODIFY', async () => {
    await writeFile(host('f.txt'), 'one');
    await replay([{ kind: EventKind.CREATE, path: 'f.txt' }]);
    await chokidar.saw(['add f.txt']); // chokidar has statted it: the next change is one it can tell
    await writeFile(host('f.txt'), 'two');
    expect((await replay([])).lines).toEqual([]);
    expect(await replay([{ kind: EventKind.MODIFY, path: 'f.txt' }])).toEqual({ failed: 0, lines: ['MODIFY f.txt'] });
    expect(readFileSync(host('f.txt'), 'utf8')).toBe('two');
    await chokidar.saw(['change f.txt']);
  });

  it('CREATE: the new file is moved away and back', async () => {
    await writeFile(host('new.txt'), 'n');
    expect(await replay([{ kind: EventKind.CREATE, path: 'new.txt' }])).toEqual({
      failed: 0,
      lines: ['MOVED_FROM new.txt', 'MOVED_TO TMP', 'MOVED_FROM TMP', 'MOVED_TO new.txt'],
    });
    await chokidar.saw(['add new.txt']);
  });

  it('MKDIR: the new folder is moved away and back, and inotifywait -r then watches inside it', async () => {
    await mkdir(host('d/e'), { recursive: true });
    await writeFile(host('d/e/x'), 'x');
    const { failed, lines } = await replay([{ kind: EventKind.MKDIR, path: 'd' }]);
    expect(failed).toBe(0);
    // MOVE_SELF lines depend on whether inotifywait had watched the folder under TMP yet: left out
    expect(lines.filter((l) => !l.startsWith('MOVE_SELF'))).toEqual(['MOVED_FROM,ISDIR d', 'MOVED_TO,ISDIR TMP', 'MOVED_FROM,ISDIR TMP', 'MOVED_TO,ISDIR d']);
    await chokidar.saw(['addDir d', 'addDir d/e', 'add d/e/x']);
    await writeFile(host('d/e/x'), 'changed');
    expect((await replay([{ kind: EventKind.MODIFY, path: 'd/e/x' }])).lines).toEqual(['MODIFY d/e/x']);
    await chokidar.saw(['change d/e/x']);
  });

  it('DELETE: a short-lived file of that name gives IN_CREATE then IN_DELETE', async () => {
    await unlink(host('new.txt'));
    const { failed, lines } = await replay([{ kind: EventKind.DELETE, path: 'new.txt' }]);
    expect(failed).toBe(0);
    expect(lines).toEqual(['CREATE new.txt', 'OPEN new.txt', 'CLOSE_WRITE,CLOSE new.txt', 'DELETE new.txt']);
    expect(existsSync(host('new.txt'))).toBe(false);
    await chokidar.saw(['unlink new.txt']);
  });

  it('DELETE of a folder: the same, for the folder name', async () => {
    await rm(host('d'), { recursive: true });
    const { failed, lines } = await replay([{ kind: EventKind.DELETE, path: 'd' }]);
    expect(failed).toBe(0);
    expect(lines).toEqual(['CREATE d', 'OPEN d', 'CLOSE_WRITE,CLOSE d', 'DELETE d']);
    await chokidar.saw(['unlinkDir d']);
  });

  it('RENAME: moved back and forward, ending in a paired from → to move', async () => {
    await writeFile(host('a.txt'), 'a');
    await replay([{ kind: EventKind.CREATE, path: 'a.txt' }]);
    await mkdir(host('sub'), { recursive: true });
    await replay([{ kind: EventKind.MKDIR, path: 'sub' }]);
    await chokidar.saw(['addDir sub']);
    await untilWatched('sub');
    await rename(host('a.txt'), host('sub/b.txt'));
    expect(await replay([{ kind: EventKind.RENAME, path: 'a.txt', to: 'sub/b.txt' }])).toEqual({
      failed: 0,
      lines: ['MOVED_FROM sub/b.txt', 'MOVED_TO a.txt', 'MOVED_FROM a.txt', 'MOVED_TO sub/b.txt'],
    });
    expect(readFileSync(host('sub/b.txt'), 'utf8')).toBe('a');
    expect(existsSync(host('a.txt'))).toBe(false);
    await chokidar.saw(['unlink a.txt', 'add sub/b.txt']);
  });

  it('RENAME of a folder: watchers end up watching it under its new name', async () => {
    await mkdir(host('old'));
    await replay([{ kind: EventKind.MKDIR, path: 'old' }]);
    await rename(host('old'), host('renamed'));
    const { failed, lines } = await replay([{ kind: EventKind.RENAME, path: 'old', to: 'renamed' }]);
    expect(failed).toBe(0);
    // MOVE_SELF lines depend on whether inotifywait had watched the folder under TMP yet: left out
    expect(lines.filter((l) => !l.startsWith('MOVE_SELF'))).toEqual([
      'CREATE old',
      'OPEN old',
      'CLOSE_WRITE,CLOSE old',
      'DELETE old',
      'MOVED_FROM,ISDIR renamed',
      'MOVED_TO,ISDIR TMP',
      'MOVED_FROM,ISDIR TMP',
      'MOVED_TO,ISDIR renamed',
    ]);
    await chokidar.saw(['addDir renamed']);
    await writeFile(host('renamed/inside.txt'), 'i');
    // chokidar watches a folder a moment after it reports it (longer in a slow guest): replay the new
    // file until chokidar has heard it; each replay is the same complete event for inotifywait.
    for (let i = 0; i < 20 && !chokidar.lines.includes('add renamed/inside.txt'); i++) {
      expect((await replay([{ kind: EventKind.CREATE, path: 'renamed/inside.txt' }])).lines).toContain('MOVED_TO renamed/inside.txt');
      await sleep(1_000);
    }
    const seen = await chokidar.saw(['add renamed/inside.txt']);
    // chokidar in a slow guest may miss the short-lived folder altogether; if it saw it, it lets it go.
    if (seen.includes('addDir old')) await chokidar.saw(['unlinkDir old']);
  });

  it('RESCAN: a folder moved away and back; the root gets a short-lived entry', async () => {
    await writeFile(host('sub/many1'), '');
    const { failed, lines } = await replay([
      { kind: EventKind.RESCAN, path: 'sub' },
      { kind: EventKind.RESCAN, path: '' },
    ]);
    expect(failed).toBe(0);
    // MOVE_SELF lines depend on which inode inotifywait is watching sub by: left out
    expect(lines.filter((l) => !l.startsWith('MOVE_SELF'))).toEqual([
      'MOVED_FROM,ISDIR sub',
      'MOVED_TO,ISDIR TMP',
      'MOVED_FROM,ISDIR TMP',
      'MOVED_TO,ISDIR sub',
      'CREATE TMP',
      'OPEN TMP',
      'CLOSE_WRITE,CLOSE TMP',
      'DELETE TMP',
    ]);
  });

  let bursts = 0;
  it('a batch of 200 host-created files is replayed in one request; every path gets its event', async () => {
    // A folder of its own for each attempt: a retry must not meet the last attempt's files or lines.
    const dir = `burst${++bursts}`;
    await mkdir(host(dir));
    await replay([{ kind: EventKind.MKDIR, path: dir }]);
    await chokidar.saw([`addDir ${dir}`]);
    await untilWatched(dir);
    const names = Array.from({ length: 200 }, (_, i) => `${dir}/f${i}`);
    for (const n of names) await writeFile(host(n), '');
    const { failed, lines } = await replay(names.map((path) => ({ kind: EventKind.CREATE, path })));
    expect(failed).toBe(0);
    const arrived = new Set(lines.filter((l) => l.startsWith(`MOVED_TO ${dir}/f`)).map((l) => l.slice('MOVED_TO '.length)));
    expect(arrived.size).toBe(200);
    await chokidar.saw(names.map((n) => `add ${n}`));
  });

  it('--watch: a change the guest made itself is not replayed back to it', async () => {
    await guestRun(`echo guest > ${SHARED}/by-guest.txt`);
    expect(readFileSync(host('by-guest.txt'), 'utf8')).toBe('guest\n');
    await writeFile(host('by-host.txt'), 'h');
    const { lines } = await replay([
      { kind: EventKind.MODIFY, path: 'by-guest.txt' },
      { kind: EventKind.MODIFY, path: 'by-host.txt' },
    ]);
    expect(lines).toEqual(['MODIFY by-host.txt']);
  });

  it('sync mode: requests make the events a local atomic save would', async () => {
    const seen = async (fn: () => Promise<unknown>) => {
      synced.lines = [];
      await fn();
      const marker = `.fence${++fence}`;
      await guest.mkdir(1, marker, 0o755);
      await synced.until(new RegExp(`CREATE,ISDIR ${marker.replace('.', '\\.')}$`));
      await guest.remove(1, marker);
      const lines = synced.lines.slice(0, synced.lines.indexOf(`CREATE,ISDIR ${marker}`)).filter((l) => !READING_FOLDER.test(l) && !l.includes('.fence'));
      console.log(lines);
      return lines;
    };
    // a new folder's first events can come before inotifywait -r has added its watch (as for any mkdir -p)
    expect(await seen(() => guest.write(1, 'src/app.js', 0o644, Buffer.alloc(3 * 1024 * 1024, 'x')))).toEqual(
      expect.arrayContaining(['CREATE,ISDIR src', 'CLOSE_WRITE,CLOSE src/TMP', 'MOVED_FROM src/TMP', 'MOVED_TO src/app.js']),
    );
    expect(await guestRun(`stat -c '%s %a' ${SYNCED}/src/app.js`)).toBe(`${3 * 1024 * 1024} 644`);
    expect(await seen(() => guest.write(1, 'src/app.js', 0o755, Buffer.from('short')))).toEqual([
      'CREATE src/TMP',
      'OPEN src/TMP',
      'MODIFY src/TMP',
      'ATTRIB src/TMP',
      'CLOSE_WRITE,CLOSE src/TMP',
      'MOVED_FROM src/TMP',
      'MOVED_TO src/app.js',
    ]);
    expect(await seen(() => guest.mkdir(1, 'lib/deep', 0o755))).toEqual(expect.arrayContaining(['CREATE,ISDIR lib']));
    expect(await seen(() => guest.symlink(1, 'lib/link', '../src/app.js'))).toEqual(['CREATE lib/TMP', 'MOVED_FROM lib/TMP', 'MOVED_TO lib/link']);
    expect(await seen(() => guest.chmod(1, 'src/app.js', 0o600))).toEqual(['ATTRIB src/app.js']);
    expect(await seen(() => guest.rename(1, 'src/app.js', 'lib/app.js'))).toEqual(['MOVED_FROM src/app.js', 'MOVED_TO lib/app.js']);
    expect(await seen(() => guest.remove(1, 'lib'))).toEqual(
      expect.arrayContaining(['DELETE lib/app.js', 'DELETE lib/link', 'DELETE,ISDIR lib/deep', 'DELETE,ISDIR lib']),
    );
    expect((await guest.list(1, '')).map((e) => `${e.type} ${e.path}`).sort()).toEqual(['d src']);
  });
});
