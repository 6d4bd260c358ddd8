// File events and sync: a `mode: sync` folder in an LXC env (image with rsync for the baseline).
//   host write → guest inotify event latency, p50/p99 over 1,000 writes (seen by inotifywait in the
//     guest; its lines come back over SSH, so the figure includes that return trip)
//       baseline: the same loop with `rsync -a` over ssh after each write (what rsync-auto tools do)
//   10,000-file burst: time until the guest watcher has seen the last file, and files never seen
//   sync throughput: a 10,000-small-file tree and one 1 GiB file moved into the folder, until
//     `env sync --wait` returns; baseline `rsync -a` of the same data over ssh to the same guest
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { figure, quantile } from './lib.mjs';

export const name = 'events';

const GUEST = '/home/dev/synced';

export async function run(root) {
  const shim = join(root, 'native/build/env-shim');
  const scratch = mkdtempSync(join(tmpdir(), 'envbox-bench-events-'));
  const project = join(scratch, 'project');
  const src = join(project, 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(
    join(project, 'Envfile'),
    ['name: bench-events', 'image: { from: debian/bookworm, packages: [rsync] }', 'network: { outbound: false }', 'folders:', `  - { host: src, guest: ${GUEST}, mode: sync }`, ''].join('\n'),
  );
  const opts = { cwd: project, argv0: 'env', env: { ...process.env, XDG_STATE_HOME: join(scratch, 'state'), NO_COLOR: '1' } };
  const envSync = (...args) => {
    const r = spawnSync(shim, args, { ...opts, encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`env ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const out = [];
  let watcher;
  try {
    envSync('up');
    const config = join(scratch, 'ssh_config');
    writeFileSync(config, envSync('ssh-config'));
    const sshCmd = `ssh -F ${config}`;
    const rsync = (from, to) => {
      const start = process.hrtime.bigint();
      const r = spawnSync('rsync', ['-a', '-e', sshCmd, from, `bench-events:${to}`], { stdio: 'ignore' });
      if (r.status !== 0) throw new Error(`rsync to the guest failed (${r.status})`);
      return Number(process.hrtime.bigint() - start) / 1e6;
    };

    // A guest watcher whose lines reach us as they happen.
    const seen = new Map();
    let waiters = [];
    envSync('exec', '--', 'mkdir', '-p', '/tmp/rsync-target');
    watcher = spawn(shim, ['exec', '--', 'inotifywait', '-m', '-r', '-e', 'moved_to,close_write', '--format', '%w%f', GUEST, '/tmp/rsync-target'], { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let watcherErr = '';
    watcher.stderr.on('data', (d) => (watcherErr += d.toString()));
    let pending = '';
    watcher.stdout.on('data', (d) => {
      pending += d.toString();
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!seen.has(line)) seen.set(line, process.hrtime.bigint());
        const w = waiters;
        waiters = [];
        for (const f of w) f();
      }
    });
    const until = async (test, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      while (!test()) {
        if (Date.now() > deadline) return false;
        await new Promise((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
      return true;
    };
    if (!(await until(() => watcherErr.includes('Watches established'), 60_000))) throw new Error(`inotifywait in the guest did not start: ${watcherErr}`);

    // Latency: 1,000 writes, one at a time.
    const lat = [];
    for (let i = 0; i < 1000; i++) {
      const file = `lat-${i % 20}.txt`;
      const key = `${GUEST}/${file}`;
      seen.delete(key);
      const start = process.hrtime.bigint();
      writeFileSync(join(src, file), `write ${i}\n`);
      if (!(await until(() => seen.has(key), 10_000))) throw new Error(`write ${i} never reached the guest watcher`);
      lat.push(Number(seen.get(key) - start) / 1e6);
    }
    const base = [];
    for (let i = 0; i < 30; i++) {
      const key = '/tmp/rsync-target/one.txt';
      seen.delete(key);
      const start = process.hrtime.bigint();
      writeFileSync(join(scratch, 'one.txt'), `write ${i}\n`);
      rsync(join(scratch, 'one.txt'), '/tmp/rsync-target/one.txt');
      await until(() => seen.has(key), 10_000);
      base.push(Number(seen.get(key) - start) / 1e6);
    }
    out.push(figure('host write → guest inotify event, p50 of 1,000', quantile(lat, 0.5), 'ms', { name: 'write + rsync -a over ssh, p50 of 30', value: quantile(base, 0.5) }));
    out.push(figure('host write → guest inotify event, p99 of 1,000', quantile(lat, 0.99), 'ms', { name: 'write + rsync -a over ssh, p99 of 30', value: quantile(base, 0.99) }, '≤ 100 ms'));

    // 10,000-file burst, created in place.
    mkdirSync(join(src, 'burst'));
    const burstStart = process.hrtime.bigint();
    for (let i = 0; i < 10_000; i++) writeFileSync(join(src, 'burst', `f${i}`), `${i}\n`);
    const names = Array.from({ length: 10_000 }, (_, i) => `${GUEST}/burst/f${i}`);
    await until(() => names.every((n) => seen.has(n)), 300_000);
    const lost = names.filter((n) => !seen.has(n)).length;
    const last = names.reduce((m, n) => (seen.has(n) && seen.get(n) > m ? seen.get(n) : m), burstStart);
    const tree = join(scratch, 'tree');
    mkdirSync(tree);
    for (let i = 0; i < 10_000; i++) writeFileSync(join(tree, `f${i}`), `${i}\n`);
    const rsyncTree = rsync(`${tree}/`, '/tmp/rsync-tree/');
    out.push(figure('10,000-file burst: host start → last guest event', Number(last - burstStart) / 1e6, 'ms', { name: 'rsync -a of the same 10,000 files over ssh', value: rsyncTree }));
    out.push(figure('10,000-file burst: files the guest watcher never saw', lost, 'files', undefined, '0'));

    // Throughput: data prepared outside the folder, moved in (one rename), until env sync --wait returns.
    const timed = (fn) => {
      const start = process.hrtime.bigint();
      fn();
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    const smallSync = timed(() => {
      renameSync(tree, join(src, 'tree'));
      envSync('sync', '--wait', '--timeout', '600');
    });
    out.push(figure('sync 10,000 small files (rename in → env sync --wait)', smallSync, 'ms', { name: 'rsync -a over ssh', value: rsyncTree }));
    const big = join(scratch, 'big.bin');
    const gen = spawnSync('head', ['-c', String(1 << 30), '/dev/urandom'], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 2 << 30 });
    writeFileSync(big, gen.stdout);
    const rsyncBig = rsync(big, '/tmp/big.bin');
    envSync('exec', '--', 'rm', '-f', '/tmp/big.bin');
    const bigSync = timed(() => {
      renameSync(big, join(src, 'big.bin'));
      envSync('sync', '--wait', '--timeout', '600');
    });
    const mib = (ms) => 1024 / (ms / 1000);
    out.push(figure('sync one 1 GiB file (rename in → env sync --wait)', mib(bigSync), 'MiB/s', { name: 'rsync -a over ssh', value: mib(rsyncBig) }));
  } finally {
    watcher?.kill();
    spawnSync(shim, ['destroy', '-f'], { ...opts, stdio: 'ignore' });
    rmSync(scratch, { recursive: true, force: true });
  }
  return out;
}
