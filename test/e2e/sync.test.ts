import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { env as runEnv } from '../helpers/cli.js';

// A real LXC container with a `mode: sync` folder, driven through the built CLI: the initial copy,
// every kind of host change, ignore globs, what guest inotify watchers see, the `env sync --wait`
// barrier, a 10,000-file burst, and escape attempts from both sides. The guest has no outbound network.

let scratch: string;
let project: string;
let src: string;
const GUEST = '/home/dev/synced';
const xdg = () => ({ XDG_STATE_HOME: join(scratch, 'state') });
const env = (args: string[]) => runEnv(args, { cwd: project, env: xdg() });

async function guest(script: string): Promise<string> {
  const r = await env(['exec', '--', 'sh', '-c', script]);
  expect(r.code, `${script}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

async function syncWait(timeout = 120): Promise<void> {
  const r = await env(['sync', '--wait', '--timeout', String(timeout)]);
  expect(r.code, r.stderr).toBe(0);
}

/** The guest folder as sorted `type mode path [-> target]` lines. */
const guestTree = async () =>
  (await guest(`cd ${GUEST} && find . -mindepth 1 -printf '%y %m %P %l\\n' | sort`)).split('\n').filter(Boolean).map((l) => l.trimEnd());

describe('mode: sync folders on an LXC container', () => {
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-e2e-sync-'));
    project = join(scratch, 'project');
    src = join(project, 'src');
    await mkdir(join(src, 'lib/deep'), { recursive: true });
    await mkdir(join(src, 'node_modules/pkg'), { recursive: true });
    await writeFile(
      join(project, 'Envfile'),
      [
        'name: e2e-sync',
        'network: { outbound: false }',
        'folders:',
        `  - { host: src, guest: ${GUEST}, mode: sync, ignore: [node_modules, "*.tmp"] }`,
        // Provisioning runs once the folder is copied, so a step can use the project's files.
        'provision:',
        `  - shell: cat ${GUEST}/README > /var/tmp/provision-saw`,
        '',
      ].join('\n'),
    );
    await writeFile(join(src, 'README'), 'hello\n');
    await writeFile(join(src, 'lib/deep/code.js'), 'module.exports = 1;\n');
    await writeFile(join(src, 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
    await writeFile(join(src, 'node_modules/pkg/index.js'), 'ignored\n');
    await writeFile(join(src, 'scratch.tmp'), 'ignored\n');
    await symlink('lib/deep/code.js', join(src, 'link.js'));
    await symlink('/etc', join(src, 'etc-link'));
    const up = await env(['up']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr + up.stdout).toMatch(/Syncing folders/);
  });

  afterAll(async () => {
    if (existsSync(join(project ?? '', 'Envfile'))) await env(['destroy', '-f']);
    await rm(scratch, { recursive: true, force: true });
  });

  it('copies the folder on env up: files, modes, directories and symlinks (not followed), ignored paths left out', async () => {
    expect(await guestTree()).toEqual([
      'd 755 lib',
      'd 755 lib/deep',
      'f 644 README',
      'f 644 lib/deep/code.js',
      'f 755 run.sh',
      'l 777 etc-link /etc',
      'l 777 link.js lib/deep/code.js',
    ].sort());
    expect(await guest(`cat ${GUEST}/link.js`)).toBe('module.exports = 1;\n');
    expect(await guest(`stat -c %U ${GUEST}/README`)).toBe('dev\n');
    expect(await guest('cat /var/tmp/provision-saw')).toBe('hello\n');
    // The copy keeps the host file's mtime (as rsync -t), to the second as stat prints it.
    const hostSeconds = Math.floor(statSync(join(src, 'lib/deep/code.js')).mtimeMs / 1000);
    expect(await guest(`stat -c %Y ${GUEST}/lib/deep/code.js`)).toBe(`${hostSeconds}\n`);
    const status = JSON.parse((await env(['status', '--json'])).stdout).env;
    expect(status.folders).toEqual([expect.objectContaining({ guest: GUEST, mode: 'sync', events: 'native', state: 'synced', via: 'helper', pending: 0 })]);
  });

  it('propagates creates, writes, deletes, renames, mkdirs, symlinks and modes; guest inotifywait sees them; ignored paths stay out', async () => {
    await guest(`rm -f /tmp/ev.log /tmp/ev.err; setsid inotifywait -m -r -q --format '%e %w%f' ${GUEST} > /tmp/ev.log 2> /tmp/ev.err < /dev/null & echo started`);
    // -q hides "Watches established"; give the watcher a moment to set up its watches.
    await sleep(1000);
    await writeFile(join(src, 'new.txt'), 'new\n');
    await writeFile(join(src, 'README'), 'hello again\n');
    await unlink(join(src, 'scratch.tmp'));
    await rename(join(src, 'lib'), join(src, 'library'));
    await mkdir(join(src, 'made/sub'), { recursive: true });
    await symlink('new.txt', join(src, 'new-link'));
    await chmod(join(src, 'run.sh'), 0o700);
    await writeFile(join(src, 'more.tmp'), 'ignored\n');
    await writeFile(join(src, 'node_modules/pkg/late.js'), 'ignored\n');
    await syncWait();
    expect(await guestTree()).toEqual(
      [
        'd 755 library',
        'd 755 library/deep',
        'd 755 made',
        'd 755 made/sub',
        'f 644 README',
        'f 644 library/deep/code.js',
        'f 644 new.txt',
        'f 700 run.sh',
        'l 777 etc-link /etc',
        'l 777 link.js lib/deep/code.js',
        'l 777 new-link new.txt',
      ].sort(),
    );
    expect(await guest(`cat ${GUEST}/README`)).toBe('hello again\n');
    await sleep(500);
    const events = await guest('cat /tmp/ev.log');
    expect(events).toMatch(new RegExp(`MOVED_TO ${GUEST}/new.txt`));
    expect(events).toMatch(new RegExp(`MOVED_TO ${GUEST}/README`));
    expect(events).toMatch(new RegExp(`MOVED_FROM,ISDIR ${GUEST}/lib\\n`));
    expect(events).toMatch(new RegExp(`MOVED_TO,ISDIR ${GUEST}/library\\n`));
    expect(events).toMatch(new RegExp(`CREATE,ISDIR ${GUEST}/made\\n`));
    // Symlinks are made under a temporary name and renamed into place, like files.
    expect(events).toMatch(new RegExp(`(CREATE|MOVED_TO) ${GUEST}/new-link`));
    expect(events).toMatch(new RegExp(`ATTRIB ${GUEST}/run.sh`));
    expect(events).not.toMatch(/\.tmp|node_modules/);
    await unlink(join(src, 'new.txt'));
    await syncWait();
    expect(await guest(`cat /tmp/ev.log; test ! -e ${GUEST}/new.txt && echo gone`)).toMatch(new RegExp(`DELETE ${GUEST}/new.txt\\n[^]*gone\\n$`));
  });

  it('env sync --wait is a barrier: what the host wrote before it is what the guest reads after it', async () => {
    for (let i = 0; i < 5; i++) {
      await writeFile(join(src, 'counter'), `${i}\n`);
      await syncWait();
      expect(await guest(`cat ${GUEST}/counter`)).toBe(`${i}\n`);
    }
    const r = await env(['sync', '--status', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).folders[0]).toMatchObject({ mode: 'sync', state: 'synced', pending: 0, failed: 0 });
  });

  it('a 10,000-file burst arrives completely, each file seen by the guest watcher', async () => {
    await guest(`: > /tmp/ev.log`);
    await mkdir(join(src, 'burst'));
    for (let i = 0; i < 10_000; i += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, j) => writeFile(join(src, 'burst', `f${i + j}`), `${i + j}\n`)));
    }
    await syncWait(600);
    expect(await guest(`ls ${GUEST}/burst | wc -l`)).toBe('10000\n');
    expect(await guest(`cat ${GUEST}/burst/f9999`)).toBe('9999\n');
    await sleep(1000);
    // Every file at least once (one written while chokidar saw it half-written arrives twice).
    const seen = await guest(`grep -a '^MOVED_TO ${GUEST}/burst/f' /tmp/ev.log | sort -u | wc -l`);
    expect(Number(seen)).toBe(10_000);
    await rm(join(src, 'burst'), { recursive: true });
    await syncWait(300);
    expect(await guest(`test -e ${GUEST}/burst && echo there || echo gone`)).toBe('gone\n');
  });

  it('rejects escapes: host symlinks are copied as links, a guest symlink in the path is not followed, guest changes do not come back', async () => {
    // Host side: a symlink to a host secret is a symlink in the guest, never the file's content.
    const secret = join(scratch, 'secret.txt');
    await writeFile(secret, 'host secret\n');
    await symlink(secret, join(src, 'leak'));
    await syncWait();
    expect(await guest(`readlink ${GUEST}/leak; cat ${GUEST}/leak 2>/dev/null || echo unreadable`)).toBe(`${secret}\nunreadable\n`);
    // Guest side: a synced directory replaced by a symlink to elsewhere must not redirect host writes.
    await mkdir(join(src, 'trap'));
    await syncWait();
    await guest(`mkdir -p /tmp/elsewhere && rm -rf ${GUEST}/trap && ln -s /tmp/elsewhere ${GUEST}/trap`);
    await writeFile(join(src, 'trap', 'payload'), 'payload\n');
    await syncWait();
    expect(await guest('ls -A /tmp/elsewhere | wc -l')).toBe('0\n');
    // The guest's own writes stay in the guest: sync is one-way.
    await guest(`echo guest > ${GUEST}/from-guest.txt`);
    await writeFile(join(src, 'after.txt'), 'x\n');
    await syncWait();
    expect(existsSync(join(src, 'from-guest.txt'))).toBe(false);
    expect((await readdir(src)).sort()).not.toContain('from-guest.txt');
  });

  it('falls back to SFTP when envbox-guest cannot run, still propagates, and says so', async () => {
    // A helper that can't be executed (as on a noexec mount); a new agent must then take the slower path.
    await guest('sudo chmod 0644 /usr/local/lib/envbox/envbox-guest');
    const { id } = JSON.parse((await env(['status', '--json'])).stdout).env;
    const pid = Number(readFileSync(join(scratch, 'state', 'envbox', 'envs', id, 'agent.pid'), 'utf8').trim());
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await sleep(100);
    const status = await env(['status']);
    expect(status.code, status.stderr).toBe(0);
    await writeFile(join(src, 'via-sftp.txt'), 'slow path\n');
    await mkdir(join(src, 'sftp-dir'));
    await symlink('via-sftp.txt', join(src, 'sftp-link'));
    await unlink(join(src, 'counter'));
    await syncWait();
    expect(await guest(`cat ${GUEST}/via-sftp.txt; readlink ${GUEST}/sftp-link; test -d ${GUEST}/sftp-dir && test ! -e ${GUEST}/counter && echo ok`)).toBe('slow path\nvia-sftp.txt\nok\n');
    const folders = JSON.parse((await env(['status', '--json'])).stdout).env.folders;
    expect(folders[0]).toMatchObject({ via: 'sftp', state: 'synced' });
    expect((await env(['status'])).stdout).toMatch(/via sftp/);
    expect((await env(['logs'])).stdout).toMatch(/envbox-guest can't run in the guest .* SFTP/);
  });

  it('is copied again, with only the differences, after env halt and env up', async () => {
    const halt = await env(['halt']);
    expect(halt.code, halt.stderr).toBe(0);
    await writeFile(join(src, 'while-halted.txt'), 'written while halted\n');
    await unlink(join(src, 'README'));
    const up = await env(['up']);
    expect(up.code, up.stderr).toBe(0);
    expect(await guest(`cat ${GUEST}/while-halted.txt; test ! -e ${GUEST}/README && echo gone`)).toBe('written while halted\ngone\n');
    const logs = await env(['logs']);
    expect(logs.stdout).toMatch(/sync-ready .*already current/);
  });
});
