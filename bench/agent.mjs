// The agent on one real LXC guest, each figure beside OpenSSH doing the same job in the same run:
// SOCKS5 throughput and connect latency vs `ssh -D` (and direct TCP, the ceiling), a port forward
// vs `ssh -L`, how fast a new guest listener is forwarded, and what the agent costs in memory.
// Needs root, LXC, the debian/bookworm image, curl and ssh; the env is destroyed afterwards.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { figure, median, quantile } from './lib.mjs';

export const name = 'agent';

const MIB = 1 << 20;
const BULK_MIB = 1024;
const CONNECTS = 1000;
const RUNS = 3;

// Guest services, in Perl (the stock image has no python3). Both listen on every address so the
// direct-TCP baseline reaches them too.
const BULK = `use IO::Socket::IP; my ($port, $mib) = @ARGV; my $buf = "\\0" x 1048576;
my $s = IO::Socket::IP->new(LocalHost => '0.0.0.0', LocalPort => $port, Listen => 64, ReuseAddr => 1) or die "listen: $!";
$SIG{CHLD} = 'IGNORE';
while (my $c = $s->accept) { next if fork; while (my $l = <$c>) { last if $l =~ /^\\r?$/ }
  print $c "HTTP/1.0 200 OK\\r\\nContent-Length: " . ($mib * 1048576) . "\\r\\n\\r\\n";
  for (1 .. $mib) { my $off = 0; while ($off < 1048576) { my $n = syswrite($c, $buf, 1048576 - $off, $off); exit unless defined $n; $off += $n } }
  exit }`;
const ACCEPT = `use IO::Socket::IP; my ($port) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => '0.0.0.0', LocalPort => $port, Listen => 512, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) { close $c }`;
const STAMPED = `use Time::HiRes qw(time); use IO::Socket::IP; my ($port, $file) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => $port, Listen => 16, ReuseAddr => 1) or die "listen: $!";
open(my $f, '>', $file); printf $f "%.6f\\n", time; close $f;
while (my $c = $s->accept) { print $c "HTTP/1.0 200 OK\\r\\n\\r\\nok"; close $c }`;

function exec(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function freePort() {
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function waitForPort(port, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

/** MiB/s of one curl download of BULK_MIB. */
async function curlSpeed(args) {
  const r = await exec('curl', ['-sS', '-o', '/dev/null', '--max-time', '120', '-w', '%{speed_download} %{size_download}', ...args], { env: { PATH: process.env.PATH } });
  const [speed, size] = r.stdout.trim().split(' ').map(Number);
  if (r.code !== 0 || size !== BULK_MIB * MIB) throw new Error(`curl ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return speed / MIB;
}

/** Milliseconds from connecting to the proxy to its CONNECT reply for 127.0.0.1:port in the guest. */
function socksConnectMs(proxyPort, port) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = net.connect({ host: '127.0.0.1', port: proxyPort, noDelay: true });
    let got = Buffer.alloc(0);
    let phase = 'greeting';
    socket.on('error', reject);
    socket.on('connect', () => socket.write(Buffer.from([5, 1, 0])));
    socket.on('data', (chunk) => {
      got = Buffer.concat([got, chunk]);
      if (phase === 'greeting' && got.length >= 2) {
        got = got.subarray(2);
        phase = 'request';
        socket.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]));
      }
      if (phase === 'request' && got.length >= 2) {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        socket.destroy();
        if (got[1] !== 0) reject(new Error(`SOCKS reply ${got[1]}`));
        else resolve(ms);
      }
    });
  });
}

function tcpConnectMs(host, port) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = net.connect({ host, port });
    socket.on('error', reject);
    socket.on('connect', () => {
      resolve(Number(process.hrtime.bigint() - started) / 1e6);
      socket.destroy();
    });
  });
}

async function rssMiB(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
}

/** Samples a process's RSS every 100 ms while `work` runs; resolves with the work's result and the peak. */
async function peakRss(pid, work) {
  let peak = await rssMiB(pid);
  const timer = setInterval(() => rssMiB(pid).then((v) => (peak = Math.max(peak, v)), () => {}), 100);
  try {
    return [await work(), () => peak];
  } finally {
    clearInterval(timer);
  }
}

export async function run(root) {
  const dir = await mkdtemp(join(tmpdir(), 'envbox-bench-agent-'));
  const project = join(dir, 'project');
  const env = (args) => exec(process.execPath, [join(root, 'dist/cli.js'), ...args], { cwd: project, env: { ...process.env, XDG_STATE_HOME: join(dir, 'state'), NO_COLOR: '1' } });
  const json = async (args) => {
    const r = await env([...args, '--json']);
    if (r.code !== 0) throw new Error(`env ${args.join(' ')}: ${r.stderr || r.stdout}`);
    return JSON.parse(r.stdout);
  };
  const inGuest = async (program, args) => {
    const r = await env(['ssh', '--', 'sh', '-c', 'nohup perl -e "$0" "$@" >/dev/null 2>&1 &', program, ...args]);
    if (r.code !== 0) throw new Error(`starting a guest service failed: ${r.stderr}`);
  };
  const forwardPort = await freePort();
  await mkdir(project, { recursive: true });
  await writeFile(join(project, 'Envfile'), `name: bench-agent\nnetwork: { outbound: false }\nports:\n  - { guest: 8001, host: ${forwardPort} }\nauto_ports: true\nproxy: { socks: auto }\n`);
  let ssh;
  const out = [];
  try {
    const up = await env(['up']);
    if (up.code !== 0) throw new Error(`env up failed: ${up.stderr}`);
    const address = (await json(['status'])).env.address;
    const proxyPort = (await json(['proxy'])).proxy.port;
    const agentPid = (await json(['ports'])).agent.pid;
    await inGuest(BULK, ['8001', String(BULK_MIB)]);
    await inGuest(ACCEPT, ['8002']);
    await sleep(500);
    const idleRss = await rssMiB(agentPid);

    // OpenSSH with the env's own ssh-config, one dedicated connection holding -D and -L.
    const config = join(dir, 'ssh_config');
    await writeFile(config, (await json(['ssh-config'])).config);
    const [socksPort, localPort] = [await freePort(), await freePort()];
    ssh = spawn('ssh', ['-F', config, '-o', 'ControlMaster=no', '-o', 'ControlPath=none', '-N', '-D', `127.0.0.1:${socksPort}`, '-L', `127.0.0.1:${localPort}:127.0.0.1:8001`, 'bench-agent'], { stdio: 'ignore' });
    await waitForPort(socksPort);
    await waitForPort(localPort);

    const speeds = { ours: [], sshD: [], direct: [], forward: [], sshL: [] };
    const [, loadPeak] = await peakRss(agentPid, async () => {
      for (let i = 0; i < RUNS; i++) {
        speeds.direct.push(await curlSpeed([`http://${address}:8001/`]));
        speeds.ours.push(await curlSpeed(['--socks5-hostname', `127.0.0.1:${proxyPort}`, 'http://localhost:8001/']));
        speeds.sshD.push(await curlSpeed(['--socks5-hostname', `127.0.0.1:${socksPort}`, 'http://localhost:8001/']));
        speeds.forward.push(await curlSpeed([`http://127.0.0.1:${forwardPort}/`]));
        speeds.sshL.push(await curlSpeed([`http://127.0.0.1:${localPort}/`]));
      }
      const connects = { ours: [], sshD: [], direct: [] };
      for (let i = 0; i < CONNECTS; i++) {
        connects.ours.push(await socksConnectMs(proxyPort, 8002));
        connects.sshD.push(await socksConnectMs(socksPort, 8002));
        connects.direct.push(await tcpConnectMs(address, 8002));
      }
      speeds.connects = connects;
    });
    const sshRss = await rssMiB(ssh.pid);
    const { connects } = speeds;
    const ours = median(speeds.ours);
    out.push(figure(`SOCKS5 throughput, ${BULK_MIB} MiB on one connection`, ours, 'MiB/s', { name: 'ssh -D', value: median(speeds.sshD) }, '≥ 2× ssh -D'));
    out.push(figure('  the same, against direct TCP to the guest', ours, 'MiB/s', { name: 'direct TCP', value: median(speeds.direct) }, '≥ 50% of direct'));
    out.push(figure(`SOCKS5 connect, p50 of ${CONNECTS}`, median(connects.ours), 'ms', { name: 'ssh -D', value: median(connects.sshD) }, '≤ ssh -D'));
    out.push(figure(`SOCKS5 connect, p99 of ${CONNECTS}`, quantile(connects.ours, 0.99), 'ms', { name: 'ssh -D', value: quantile(connects.sshD, 0.99) }));
    out.push(figure('  direct TCP connect to the guest, p50 / p99', median(connects.direct), 'ms', { name: 'p99', value: quantile(connects.direct, 0.99) }));
    out.push(figure(`port forward throughput, ${BULK_MIB} MiB`, median(speeds.forward), 'MiB/s', { name: 'ssh -L', value: median(speeds.sshL) }, '≥ 2× ssh -L'));

    // A new guest listener: from its listen() (the guest's clock is the host's) to a host GET answered.
    const delays = [];
    for (let i = 0; i < 5; i++) {
      const port = await freePort();
      const stamp = `/tmp/envbox-bench-${port}`;
      let answered;
      const polling = (async () => {
        for (;;) {
          const ok = await new Promise((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port });
            let body = '';
            s.on('data', (d) => (body += d));
            s.on('error', () => resolve(false));
            s.on('close', () => resolve(body.endsWith('ok')));
          });
          if (ok) return (answered = Date.now() / 1000);
          await sleep(2);
        }
      })();
      await inGuest(STAMPED, [String(port), stamp]);
      await Promise.race([polling, sleep(10_000)]);
      const listened = Number((await env(['ssh', '--', 'cat', stamp])).stdout.trim());
      await env(['ssh', '--', 'sh', '-c', `pkill -f "${port} ${stamp}"; rm -f ${stamp}`]);
      if (answered === undefined) throw new Error(`guest port ${port} was never forwarded`);
      delays.push((answered - listened) * 1000);
    }
    out.push(figure('auto-forward: guest listen() → host port answering, median of 5', median(delays), 'ms', undefined, '≤ 1000 ms'));
    out.push(figure('agent RSS, idle', idleRss, 'MiB', { name: 'ssh client holding -D and -L', value: sshRss }, '≤ 60 MiB'));
    out.push(figure('agent RSS, peak under the load above', loadPeak(), 'MiB', undefined, '≤ 60 MiB'));
    return out;
  } finally {
    ssh?.kill('SIGKILL');
    await env(['destroy', '-f']);
    await rm(dir, { recursive: true, force: true });
  }
}
