// QEMU VM envs: env up of a new VM from a cached image (to a working key login) against a raw
// qemu-system-x86_64 boot of the same kernel, initrd and disk to the first OpenSSH key login, and the
// 9p shared folder's throughput against the guest's own disk.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { figure, median, timeOnce } from './lib.mjs';

export const name = 'vm';

const RUNS = 2;
const MIB = 256;

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Polls OpenSSH until a key login works; milliseconds since `start`. */
function untilLogin(start, key, port, user) {
  const args = ['-i', key, '-p', String(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', `${user}@127.0.0.1`, 'true'];
  for (;;) {
    if (spawnSync('ssh', args, { stdio: 'ignore' }).status === 0) return Number(process.hrtime.bigint() - start) / 1e6;
    if (Number(process.hrtime.bigint() - start) / 1e9 > 600) throw new Error('raw QEMU never accepted a login');
    spawnSync('sleep', ['0.2']);
  }
}

/** dd's MB/s figure from its closing line ("... copied, 1.2 s, 223 MB/s"), converted to MiB/s. */
function ddRate(text) {
  const m = /copied, ([\d.]+) s/.exec(text);
  if (!m) throw new Error(`dd said: ${text}`);
  return MIB / Number(m[1]);
}

export async function run(root) {
  const shim = join(root, 'native/build/env-shim');
  const scratch = mkdtempSync(join(tmpdir(), 'envbox-bench-vm-'));
  const project = join(scratch, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'Envfile'), 'name: bench-vm\nprovider: vm\ncpus: 2\nmemory: 1GiB\nnetwork: { outbound: false }\n');
  const state = join(scratch, 'state');
  const opts = { cwd: project, argv0: 'env', env: { ...process.env, XDG_STATE_HOME: state, NO_COLOR: '1' } };
  const env = (...args) => timeOnce(shim, args, opts);
  const envOut = (...args) => spawnSync(shim, args, { ...opts, encoding: 'utf8' });
  const guest = (script) => {
    const r = envOut('exec', '--', 'sh', '-c', script);
    if (r.status !== 0) throw new Error(`${script}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const out = [];
  let raw;
  try {
    // The VM image is built (or found in the cache) outside the timed runs.
    env('up');
    env('destroy', '-f');
    const fresh = [];
    for (let i = 0; i < RUNS; i++) {
      fresh.push(env('up'));
      if (i < RUNS - 1) env('destroy', '-f');
    }

    // Throughput: 256 MiB written with fsync and read back cold, on the share and on the guest's disk.
    const rates = {};
    for (const [where, path] of [['share', '$HOME/project/bench.bin'], ['disk', '$HOME/bench.bin']]) {
      const write = guest(`dd if=/dev/zero of=${path} bs=1M count=${MIB} conv=fsync 2>&1`);
      guest('sync; echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null');
      const read = guest(`dd if=${path} of=/dev/null bs=1M 2>&1; rm -f ${path}`);
      rates[where] = { write: ddRate(write), read: ddRate(read) };
    }

    // Baseline: the same QEMU command envbox runs, on the env's own (already booted once) disk.
    const status = JSON.parse(envOut('status', '--json').stdout).env;
    const dir = join(state, 'envbox', 'envs', status.id);
    const record = JSON.parse(readFileSync(join(dir, 'env.json'), 'utf8'));
    env('halt');
    const { qemuArgs } = await import(join(root, 'dist/providers/qemu/argv.js'));
    const image = join(record.machine.image.dir);
    const port = await freePort();
    const qemu = join(scratch, 'raw');
    mkdirSync(qemu);
    const args = qemuArgs({
      id: 'bench-raw', accel: record.machine.accel.kind, cpus: 2, memoryBytes: 2 ** 30,
      kernel: join(image, 'vmlinuz'), initrd: join(image, 'initrd.img'), disk: join(dir, 'qemu/disk.qcow2'),
      sshPort: port, outbound: false, seed: join(dir, 'qemu/seed'), folders: [],
      qmp: join(qemu, 'qmp.sock'), pidFile: join(qemu, 'qemu.pid'), consoleLog: join(qemu, 'console.log'),
    });
    const start = process.hrtime.bigint();
    const launched = spawn('qemu-system-x86_64', args, { stdio: 'ignore' });
    await new Promise((resolve) => launched.on('exit', resolve));
    raw = Number(readFileSync(join(qemu, 'qemu.pid'), 'utf8'));
    const rawMs = untilLogin(start, join(dir, 'id_ed25519'), port, 'dev');
    process.kill(raw, 'SIGTERM');
    raw = undefined;

    const halted = env('up');
    const baseline = { name: `raw qemu-system-x86_64 (${record.machine.accel.kind}) → first OpenSSH key login`, value: rawMs };
    out.push(figure(`env up, new VM from a cached image, median of ${RUNS}`, median(fresh), 'ms', baseline, '≤ 1.2× baseline'));
    out.push(figure('env up of a halted VM', halted, 'ms', baseline, '≤ 1.2× baseline'));
    for (const dir of ['write', 'read']) {
      out.push(figure(`9p shared folder ${dir}, ${MIB} MiB`, rates.share[dir], 'MiB/s', { name: `guest disk ${dir}`, value: rates.disk[dir] }));
    }
  } finally {
    if (raw) process.kill(raw, 'SIGKILL');
    spawnSync(shim, ['destroy', '-f'], { ...opts, stdio: 'ignore' });
    rmSync(scratch, { recursive: true, force: true });
  }
  return out;
}
