import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SHIM, env as runEnv } from '../helpers/cli.js';

// Host file events replayed in a real VM (QEMU; TCG where KVM can't boot) through `env up`: the project
// is mounted over 9p, which carries no inotify, so the agent watches the host folder and replays each
// change through envbox-guest. In the guest, `inotifywait -m -r` and a Python watchdog observer must see
// host create/modify/delete/rename/mkdir; ignored paths produce nothing; the guest's own write does not
// come back as a replay. The guest never gets outbound network.

let scratch: string;
let project: string;
const GUEST = '/home/dev/project';
const xdg = () => ({ XDG_STATE_HOME: join(scratch, 'state') });
const env = (args: string[]) => runEnv(args, { cwd: project, env: xdg() });
const children: ChildProcessWithoutNullStreams[] = [];

const WATCHDOG = `
import sys, time
from watchdog.observers import Observer
from watchdog.events import FileSystemEventHandler
class Show(FileSystemEventHandler):
    def on_any_event(self, e):
        if e.event_type in ('opened', 'closed', 'closed_no_write'): return
        print(e.event_type, e.src_path, getattr(e, 'dest_path', '') or '', flush=True)
o = Observer()
o.schedule(Show(), sys.argv[1], recursive=True)
o.start()
print('ready', flush=True)
while True: time.sleep(1)
`;

/** A guest program whose output lines come back as they are printed. */
class GuestLines {
  lines: string[] = [];
  err = '';
  readonly child: ChildProcessWithoutNullStreams;
  constructor(args: string[]) {
    this.child = spawn(SHIM, ['exec', '--', ...args], { cwd: project, argv0: 'env', env: { ...process.env, ...xdg(), NO_COLOR: '1' } });
    children.push(this.child);
    let buf = '';
    this.child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      this.lines.push(...parts);
    });
    this.child.stderr.on('data', (d: Buffer) => (this.err += d.toString()));
  }
  async until(test: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!test()) {
      if (Date.now() > deadline) throw new Error(`${what} not seen within ${timeoutMs / 1000} s; got:\n${this.lines.join('\n')}\n${this.err}`);
      await sleep(100);
    }
  }
  waitFor(re: RegExp, timeoutMs?: number): Promise<void> {
    return this.until(() => this.lines.some((l) => re.test(l)), String(re), timeoutMs);
  }
  about(name: string): string[] {
    return this.lines.filter((l) => l.includes(name));
  }
}

describe('host file events replayed in a VM', () => {
  let inotify: GuestLines;
  let watchdog: GuestLines;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-e2e-vmev-'));
    project = join(scratch, 'project');
    await mkdir(project);
    await writeFile(
      join(project, 'Envfile'),
      [
        'name: e2e-vmev',
        'provider: vm',
        'cpus: 2',
        'memory: 1GiB',
        'image: { from: debian/bookworm, packages: [python3-watchdog] }',
        'network: { outbound: false }',
        'folders:',
        `  - { host: ., guest: ${GUEST}, ignore: [ignored, "*.swp"] }`,
        '',
      ].join('\n'),
    );
    await writeFile(join(project, 'existing.txt'), 'old\n');
    const up = await env(['up']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr + up.stdout).toMatch(/File events/);
    inotify = new GuestLines(['sh', '-c', `exec inotifywait -m -r --format '%e %w%f' ${GUEST}`]);
    await inotify.until(() => inotify.err.includes('Watches established'), 'inotifywait ready');
    watchdog = new GuestLines(['python3', '-u', '-c', WATCHDOG, GUEST]);
    await watchdog.waitFor(/^ready$/);
  });

  afterAll(async () => {
    for (const c of children) c.kill();
    if (project && existsSync(join(project, 'Envfile'))) await env(['destroy', '-f']);
    await rm(scratch, { recursive: true, force: true });
  });

  const synced = async () => {
    const r = await env(['sync', '--wait', '--timeout', '120']);
    expect(r.code, r.stderr).toBe(0);
  };

  it('reports the folder as replayed through the helper', async () => {
    const status = JSON.parse((await env(['status', '--json'])).stdout).env;
    expect(status.folders).toEqual([expect.objectContaining({ guest: GUEST, mode: 'mount', events: 'replayed', state: 'watching', via: 'helper' })]);
  });

  it('a host create is seen by inotifywait and watchdog', async () => {
    await writeFile(join(project, 'created.txt'), 'new\n');
    await synced();
    await inotify.waitFor(new RegExp(`^MOVED_TO ${GUEST}/created\\.txt$`));
    await watchdog.waitFor(new RegExp(`^(created|moved) .*created\\.txt`));
  });

  it('a host modify', async () => {
    await writeFile(join(project, 'existing.txt'), 'changed on the host\n');
    await synced();
    await inotify.waitFor(new RegExp(`^MODIFY ${GUEST}/existing\\.txt$`));
    await watchdog.waitFor(new RegExp(`^modified ${GUEST}/existing\\.txt`));
  });

  it('a host mkdir', async () => {
    await mkdir(join(project, 'newdir'));
    await synced();
    await inotify.waitFor(new RegExp(`^MOVED_TO,ISDIR ${GUEST}/newdir$`));
    await watchdog.waitFor(new RegExp(`^(created|moved) .*newdir`));
  });

  it('a host rename', async () => {
    await rename(join(project, 'created.txt'), join(project, 'renamed.txt'));
    await synced();
    await inotify.waitFor(new RegExp(`^MOVED_TO ${GUEST}/renamed\\.txt$`));
    await watchdog.waitFor(new RegExp(`^moved .* ${GUEST}/renamed\\.txt$`));
  });

  it('a host delete', async () => {
    await unlink(join(project, 'renamed.txt'));
    await synced();
    await inotify.waitFor(new RegExp(`^DELETE ${GUEST}/renamed\\.txt$`));
    await watchdog.waitFor(new RegExp(`^deleted ${GUEST}/renamed\\.txt`));
  });

  it('ignored paths produce nothing', async () => {
    await mkdir(join(project, 'ignored'));
    await writeFile(join(project, 'ignored', 'noise.txt'), 'x\n');
    await writeFile(join(project, '.file.swp'), 'x\n');
    await writeFile(join(project, 'marker.txt'), 'x\n');
    await synced();
    await inotify.waitFor(new RegExp(`^MOVED_TO ${GUEST}/marker\\.txt$`));
    await sleep(2000);
    expect(inotify.lines.filter((l) => /ignored|\.swp/.test(l))).toEqual([]);
    expect(watchdog.lines.filter((l) => /ignored|\.swp/.test(l))).toEqual([]);
  });

  it("a guest-side write does not echo back", async () => {
    const r = await env(['exec', '--', 'sh', '-c', `echo from-guest > ${GUEST}/guest.txt`]);
    expect(r.code, r.stderr).toBe(0);
    await inotify.waitFor(new RegExp(`^CLOSE_WRITE,CLOSE ${GUEST}/guest\\.txt$`));
    await sleep(1500);
    const before = inotify.about('guest.txt').length;
    // The host watcher has seen the write through the mount by now; the barrier makes sure it was handled.
    await synced();
    await sleep(3000);
    expect(inotify.about('guest.txt').slice(before)).toEqual([]);
    const status = JSON.parse((await env(['sync', '--status', '--json'])).stdout);
    expect(status.folders[0]).toMatchObject({ pending: 0 });
  });
});
