// LXC envs: env up (new and halted) against a raw lxc-start of the same container to the first
// OpenSSH key login, env ssh against OpenSSH with the generated ssh_config, and env destroy.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { figure, median, timeOnce } from './lib.mjs';

export const name = 'lxc';

export async function run(root) {
  const shim = join(root, 'native/build/env-shim');
  const scratch = mkdtempSync(join(tmpdir(), 'envbox-bench-lxc-'));
  const project = join(scratch, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'Envfile'), 'name: bench-lxc\nnetwork: { outbound: false }\n');
  const opts = { cwd: project, argv0: 'env', env: { ...process.env, XDG_STATE_HOME: join(scratch, 'state'), NO_COLOR: '1' } };
  const env = (...args) => timeOnce(shim, args, opts);
  const envOut = (...args) => spawnSync(shim, args, { ...opts, encoding: 'utf8' });
  const out = [];
  // Every figure here is wall time on a shared machine: the load beside them says how busy it was.
  const load = () => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  const loadAtStart = load();
  try {
    // The image is built (or found in the cache) outside the timed runs.
    env('up');
    env('destroy', '-f');

    const fresh = [];
    const destroy = [];
    for (let i = 0; i < 3; i++) {
      fresh.push(env('up'));
      if (i < 2) destroy.push(env('destroy', '-f'));
    }

    const status = JSON.parse(envOut('status', '--json').stdout).env;
    const config = join(scratch, 'ssh_config');
    writeFileSync(config, envOut('ssh-config').stdout);
    const lxcpath = '/run/envbox/lxc';
    const halted = [];
    const raw = [];
    for (let i = 0; i < 3; i++) {
      env('halt');
      halted.push(env('up'));
      // Baseline: LXC itself starting the same container (its rootfs still mounted: the container is
      // stopped with lxc-stop, not env halt), polled with OpenSSH until a key login works.
      timeOnce('lxc-stop', ['-P', lxcpath, '-n', status.id, '-k']);
      const start = process.hrtime.bigint();
      timeOnce('lxc-start', ['-P', lxcpath, '-n', status.id, '-d']);
      for (;;) {
        // ControlPath=none: a fresh login each time, never the shared connection env up left (its guest was just killed).
        const r = spawnSync('ssh', ['-F', config, '-o', 'ControlMaster=no', '-o', 'ControlPath=none', '-o', 'ConnectTimeout=1', 'bench-lxc', 'true'], { stdio: 'ignore' });
        if (r.status === 0) break;
        if (Number(process.hrtime.bigint() - start) / 1e9 > 60) throw new Error('raw lxc-start never accepted a login');
      }
      raw.push(Number(process.hrtime.bigint() - start) / 1e6);
      timeOnce('lxc-stop', ['-P', lxcpath, '-n', status.id, '-k']);
    }
    env('halt');
    env('up');

    const ours = [];
    const openssh = [];
    const opensshFresh = [];
    for (let i = 0; i < 10; i++) {
      ours.push(env('ssh', '--', 'true'));
      openssh.push(timeOnce('ssh', ['-F', config, 'bench-lxc', 'true']));
      opensshFresh.push(timeOnce('ssh', ['-F', config, '-o', 'ControlMaster=no', '-o', 'ControlPath=none', 'bench-lxc', 'true']));
    }
    spawnSync('ssh', ['-F', config, '-O', 'exit', 'bench-lxc'], { stdio: 'ignore' });
    destroy.push(env('destroy', '-f'));

    const rawMedian = median(raw);
    out.push(figure('env up, new env from a cached image, median of 3', median(fresh), 'ms', { name: 'raw lxc-start → first OpenSSH key login', value: rawMedian }, '≤ 1500 ms and ≤ 2× baseline'));
    out.push(figure('env up of a halted env, median of 3', median(halted), 'ms', { name: 'raw lxc-start → first OpenSSH key login', value: rawMedian }, '≤ 1000 ms'));
    out.push(figure('env ssh -- true, median of 10', median(ours), 'ms', { name: 'ssh -F <(env ssh-config) NAME true (ControlMaster)', value: median(openssh) }, '≤ 1.0× baseline'));
    out.push(figure('  OpenSSH without connection sharing, median of 10', median(opensshFresh), 'ms'));
    out.push(figure('env destroy, median of 3', median(destroy), 'ms'));
    out.push(figure(`machine load (1-min average): ${loadAtStart} at start, at end`, load(), '(runnable tasks)'));
  } finally {
    spawnSync(shim, ['destroy', '-f'], { ...opts, stdio: 'ignore' });
    rmSync(scratch, { recursive: true, force: true });
  }
  return out;
}
