// Incus envs: env up of a new env (image already in the daemon) to ready, against the daemon doing
// the same by itself — incus init + the SSH proxy device + the key pushed + incus start, polled with
// OpenSSH until a key login works — and env up of a halted env, env destroy. Starts the daemon through
// scripts/incus-ci.sh when none runs (and stops it again).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { figure, median, timeOnce } from './lib.mjs';

export const name = 'incus';

const incus = (...args) => {
  const r = spawnSync('incus', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`incus ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
};

export async function run(root) {
  const shim = join(root, 'native/build/env-shim');
  const ci = spawnSync(join(root, 'scripts/incus-ci.sh'), ['up'], { encoding: 'utf8' });
  if (ci.status !== 0) throw new Error(`scripts/incus-ci.sh up failed: ${ci.stderr.trim()}`);
  const started = /^started \d+/m.test(ci.stdout);
  const scratch = mkdtempSync(join(tmpdir(), 'envbox-bench-incus-'));
  const project = join(scratch, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'Envfile'), 'name: bench-incus\nprovider: incus\nnetwork: { outbound: false }\n');
  spawnSync('chown', ['-R', '1000:1000', project]);
  const opts = { cwd: project, argv0: 'env', env: { ...process.env, XDG_STATE_HOME: join(scratch, 'state'), XDG_CONFIG_HOME: join(scratch, 'config'), NO_COLOR: '1' } };
  const env = (...args) => timeOnce(shim, args, opts);
  const key = join(scratch, 'id');
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(scratch, 'hostkey')]);
  const holder = `envbox-bench-holder-${process.pid}`;
  const raw = `envbox-bench-raw-${process.pid}`;
  const out = [];
  let alias;
  let imported = false;
  try {
    // The image is built and imported outside the timed runs; a stopped instance keeps it in the daemon.
    const aliasesBefore = new Set(JSON.parse(incus('query', '/1.0/images/aliases?recursion=1')).map((a) => a.name));
    env('up');
    alias = JSON.parse(readFileSync(join(scratch, 'state/envbox/envs', readdirOne(join(scratch, 'state/envbox/envs')), 'env.json'), 'utf8')).machine.image.alias;
    imported = !aliasesBefore.has(alias);
    incus('init', alias, holder, '--no-profiles', '--storage', 'default');
    env('destroy', '-f');

    const fresh = [];
    const baseline = [];
    const destroy = [];
    for (let i = 0; i < 3; i++) {
      fresh.push(env('up'));
      destroy.push(env('destroy', '-f'));
      baseline.push(launchToLogin(alias, raw, key, join(scratch, 'hostkey')));
      incus('delete', '--force', raw);
    }
    env('up');
    const halted = [];
    for (let i = 0; i < 3; i++) {
      env('halt');
      halted.push(env('up'));
    }
    env('destroy', '-f');

    const base = { name: 'incus init + proxy device + key push + start → first OpenSSH key login', value: median(baseline) };
    out.push(figure('env up, new incus env (image in the daemon), median of 3', median(fresh), 'ms', base, '≤ 1.1× baseline'));
    out.push(figure('env up of a halted incus env, median of 3', median(halted), 'ms'));
    out.push(figure('env destroy of an incus env, median of 3', median(destroy), 'ms'));
  } finally {
    spawnSync(shim, ['destroy', '-f'], { ...opts, stdio: 'ignore' });
    for (const name of [raw, holder]) spawnSync('incus', ['delete', '--force', name], { stdio: 'ignore' });
    // The holder kept envbox's image in the daemon past the last destroy: remove it if this run imported it.
    if (imported) spawnSync('incus', ['image', 'delete', alias], { stdio: 'ignore' });
    rmSync(scratch, { recursive: true, force: true });
    if (started) spawnSync(join(root, 'scripts/incus-ci.sh'), ['down'], { stdio: 'ignore' });
  }
  return out;
}

function readdirOne(dir) {
  const entries = readdirSync(dir).filter((e) => !e.endsWith('.lock'));
  if (entries.length !== 1) throw new Error(`expected one env in ${dir}, found ${entries.join(', ')}`);
  return entries[0];
}

/** The daemon on its own: an instance like envbox's, the key and host key pushed, started, polled with ssh. */
function launchToLogin(alias, name, key, hostKey) {
  const port = 29000 + Math.floor(Math.random() * 900);
  const start = process.hrtime.bigint();
  incus('init', alias, name, '--no-profiles', '--storage', 'default', '--config', 'security.idmap.isolated=true');
  incus('config', 'device', 'add', name, 'ssh', 'proxy', `listen=tcp:127.0.0.1:${port}`, 'connect=tcp:127.0.0.1:22', 'bind=host');
  incus('file', 'push', '--create-dirs', '--mode', '0600', `${key}.pub`, `${name}/root/.ssh/authorized_keys`);
  incus('file', 'push', '--mode', '0600', hostKey, `${name}/etc/ssh/ssh_host_ed25519_key`);
  incus('start', name);
  const args = ['-i', key, '-p', String(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=2', '-o', 'LogLevel=ERROR', 'root@127.0.0.1', 'true'];
  for (;;) {
    if (spawnSync('ssh', args, { stdio: 'ignore' }).status === 0) break;
    if (Number(process.hrtime.bigint() - start) / 1e9 > 60) throw new Error('the raw instance never accepted a login');
  }
  return Number(process.hrtime.bigint() - start) / 1e6;
}
