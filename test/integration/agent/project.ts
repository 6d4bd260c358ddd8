/**
 * What the agent's integration tests share: temp projects driven through the real CLI (state in a
 * scratch XDG_STATE_HOME, guests without outbound network), guest services written in Perl (the
 * stock image has perl, not python3), HTTP through forwards and proxies, and cleanup of every env,
 * folder and process a test file made, also when it fails.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SocksClient } from 'socks';
import { expect, vi } from 'vitest';
import { env as runEnv, type CliResult } from '../../helpers/cli.js';

export interface Project {
  name: string;
  dir: string;
  env(args: string[]): Promise<CliResult>;
  /** `env ARGS --json`, parsed; fails the test on a non-zero exit. */
  json<T = Record<string, unknown>>(args: string[]): Promise<T>;
}

export interface Scratch {
  dir: string;
  project(name: string, envfile: string): Promise<Project>;
  /** Destroys every env made here, kills the processes registered, removes the folder. */
  cleanup(): Promise<void>;
  /** A process to kill (by pid) at cleanup. */
  track(pid: number | undefined): void;
}

export async function scratch(): Promise<Scratch> {
  const dir = await mkdtemp(join(tmpdir(), 'envbox-agent-it-'));
  const pids = new Set<number>();
  const xdg = { XDG_STATE_HOME: join(dir, 'state') };
  return {
    dir,
    track: (pid) => void (pid && pids.add(pid)),
    async project(name, envfile) {
      const projectDir = join(dir, name);
      await mkdir(projectDir, { recursive: true });
      await writeFile(join(projectDir, 'Envfile'), envfile);
      const p: Project = {
        name,
        dir: projectDir,
        env: (args) => runEnv(args, { cwd: projectDir, env: xdg }),
        async json(args) {
          const r = await p.env([...args, '--json']);
          expect(r.code, `env ${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
          return JSON.parse(r.stdout);
        },
      };
      return p;
    },
    async cleanup() {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (existsSync(join(dir, name, 'Envfile'))) await runEnv(['destroy', '-f'], { cwd: join(dir, name), env: xdg });
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// Guest services. Each runs detached in the guest (`env ssh` returns at once) and prints nothing.
const HTTP_SERVER = `use IO::Socket::IP; my ($ip, $port, $body) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => $ip, LocalPort => $port, Listen => 64, ReuseAddr => 1) or die "listen: $!";
$SIG{CHLD} = 'IGNORE';
while (my $c = $s->accept) { next if fork; while (my $l = <$c>) { last if $l =~ /^\\r?$/ }
  print $c "HTTP/1.0 200 OK\\r\\nContent-Type: text/html\\r\\nContent-Length: " . length($body) . "\\r\\n\\r\\n$body"; close $c; exit }`;
const ECHO_SERVER = `use IO::Socket::IP; my ($ip, $port) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => $ip, LocalPort => $port, Listen => 64, ReuseAddr => 1) or die "listen: $!";
$SIG{CHLD} = 'IGNORE';
while (my $c = $s->accept) { next if fork; while (sysread($c, my $buf, 262144)) { syswrite($c, $buf) } exit }`;
// Takes one connection, stops listening once it has echoed the first read, and goes on echoing:
// a guest port that goes away while a connection to it lasts.
const ECHO_ONCE = `use IO::Socket::IP; my ($ip, $port) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => $ip, LocalPort => $port, Listen => 1, ReuseAddr => 1) or die "listen: $!";
my $c = $s->accept; sysread($c, my $first, 65536); close $s; syswrite($c, $first);
while (sysread($c, my $buf, 65536)) { syswrite($c, $buf) }`;
const UDP_ECHO = `use IO::Socket::IP; my ($ip, $port) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => $ip, LocalPort => $port, Proto => 'udp') or die "bind: $!";
while (1) { my $peer = $s->recv(my $m, 65535); $s->send("echo:$m", 0, $peer) }`;

async function startInGuest(p: Project, program: string, args: string[], tag: string): Promise<void> {
  // $0 is the program and $1… its arguments, so nothing needs quoting twice. The tag names the process for stop().
  const r = await p.env(['ssh', '--', 'sh', '-c', `nohup perl -e "$0" "$@" ${tag} >/dev/null 2>&1 &`, program, ...args]);
  expect(r.code, r.stderr).toBe(0);
}

export const guestHttp = (p: Project, ip: string, port: number, body: string) => startInGuest(p, HTTP_SERVER, [ip, String(port), body], `http-${port}`);
export const guestEcho = (p: Project, ip: string, port: number) => startInGuest(p, ECHO_SERVER, [ip, String(port)], `echo-${port}`);
export const guestEchoOnce = (p: Project, ip: string, port: number) => startInGuest(p, ECHO_ONCE, [ip, String(port)], `once-${port}`);
export const guestUdpEcho = (p: Project, ip: string, port: number) => startInGuest(p, UDP_ECHO, [ip, String(port)], `udp-${port}`);

/** Stops the guest services started with that port. */
export async function stopInGuest(p: Project, port: number): Promise<void> {
  await p.env(['ssh', '--', 'sh', '-c', `pkill -f -- "-$0\\$" || true`, String(port)]);
}

/** GET through a direct host port; undefined when the connection fails or is closed without an answer. */
export function httpGet(port: number, path = '/', host = '127.0.0.1'): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path, timeout: 5_000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', () => resolve(undefined));
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
  });
}

/** GET through the SOCKS5 proxy with the real `socks` client, the name resolved in the guest. */
export async function socksGet(proxyPort: number, host: string, port: number, auth?: { userId: string; password: string }): Promise<string> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: proxyPort, type: 5, ...auth },
    command: 'connect',
    destination: { host, port },
    timeout: 10_000,
  });
  return new Promise((resolve, reject) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(text.slice(text.indexOf('\r\n\r\n') + 4)));
    socket.write(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
  });
}

/** Polls `check` until it passes (vitest's waitFor with a generous budget for booting guests). */
export const eventually = <T>(check: () => Promise<T> | T, timeout = 60_000) => vi.waitFor(check, { timeout, interval: 250 });

/** Runs a program to completion with a time limit; its pid is tracked for cleanup. */
export function runTracked(s: Scratch, file: string, args: string[], timeoutMs: number): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: s.dir } });
    s.track(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** A free port on the host's loopback right now. */
export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
