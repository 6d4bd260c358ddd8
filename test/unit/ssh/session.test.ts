import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import ssh2, { type Client, type Connection, type PseudoTtyInfo, type WindowChangeInfo } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  connect,
  ensureUserKey,
  exec,
  execCapture,
  fingerprint,
  generateHostKey,
  shell,
  writeKnownHosts,
  writeSshConfigInclude,
  type HostKey,
  type Terminal,
} from '../../../src/ssh/index.js';
import { run } from '../../../src/util/exec.js';
import { EnvboxError } from '../../../src/util/errors.js';

/**
 * A real SSH server in this process (as mscdex/ssh2's test/common.js does): it checks the env key, runs
 * exec/shell requests with the local `sh` and reports exit statuses and signals as sshd does.
 */
interface TestServer {
  port: number;
  connections: number;
  ptys: PseudoTtyInfo[];
  windows: WindowChangeInfo[];
  /** Drops every client connection (a guest that went away). */
  dropAll(): void;
  close(): Promise<void>;
}

let dir: string;
let home: string;
let hostKey: HostKey;
let userKey: string;
let userPublicKey: string;
let knownHosts: string;
const servers: TestServer[] = [];
const clients: Client[] = [];

interface ServerOptions {
  key?: HostKey;
  allowedKey?: string;
  port?: number;
  /** Hang up on this many logins after the banner, as sshd does while pam_nologin says the guest is booting. */
  hangUps?: number;
  banner?: string;
  /** Answer every session at once with output, exit status 7 and the close, all in one write burst. */
  instant?: boolean;
}

async function startServer(opts: ServerOptions = {}): Promise<TestServer> {
  const allowed = ssh2.utils.parseKey(opts.allowedKey ?? userPublicKey);
  if (allowed instanceof Error) throw allowed;
  const conns = new Set<Connection>();
  const children = new Set<ReturnType<typeof spawn>>();
  const state: Omit<TestServer, 'port' | 'dropAll' | 'close'> = { connections: 0, ptys: [], windows: [] };
  let hangUps = opts.hangUps ?? 0;
  const config = { hostKeys: [(opts.key ?? hostKey).privateKey], ...(opts.banner ? { banner: opts.banner } : {}) };
  const server = new ssh2.Server(config, (conn) => {
    state.connections++;
    conns.add(conn);
    // Nagle plus delayed ACKs would add ~40 ms to every handshake round trip (sshd disables it too).
    (conn as unknown as { setNoDelay(on: boolean): void }).setNoDelay(true);
    conn.on('error', () => {});
    conn.on('close', () => conns.delete(conn));
    conn.on('authentication', (ctx) => {
      if (hangUps > 0) {
        hangUps--;
        conn.end();
        return;
      }
      const ok =
        ctx.method === 'publickey' &&
        ctx.key.algo === allowed.type &&
        ctx.key.data.equals(allowed.getPublicSSH()) &&
        (!ctx.signature || allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo));
      if (ok) ctx.accept();
      else ctx.reject(['publickey']);
    });
    conn.on('session', (accept) => {
      const session = accept();
      session.on('pty', (acceptPty, _reject, info) => {
        state.ptys.push(info);
        acceptPty?.();
      });
      session.on('window-change', (acceptWc, _reject, info) => {
        state.windows.push(info);
        acceptWc?.();
      });
      const start = (args: string[]) => (acceptStream: () => ssh2.ServerChannel) => {
        const stream = acceptStream();
        if (opts.instant) {
          stream.write('at once\n');
          stream.exit(7);
          stream.end();
          return;
        }
        const child = spawn('sh', args, { cwd: home, env: { PATH: process.env.PATH, HOME: home, SHELL: '/bin/sh' } });
        children.add(child);
        child.stdin.on('error', () => {});
        stream.pipe(child.stdin);
        child.stdout.pipe(stream, { end: false });
        child.stderr.pipe(stream.stderr, { end: false });
        child.on('close', (code, signal) => {
          children.delete(child);
          if (signal) stream.exit(signal);
          else stream.exit(code ?? 255);
          stream.end();
        });
      };
      session.on('exec', (acceptStream, _reject, info) => start(['-c', info.command])(acceptStream));
      session.on('shell', (acceptStream) => start([])(acceptStream));
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const handle: TestServer = Object.assign(state, {
    port: (server.address() as AddressInfo).port,
    dropAll: () => conns.forEach((c) => c.end()),
    close: async () => {
      children.forEach((c) => c.kill('SIGKILL'));
      conns.forEach((c) => c.end());
      await new Promise((resolve) => server.close(resolve));
    },
  });
  servers.push(handle);
  return handle;
}

async function login(server: TestServer, extra: Partial<Parameters<typeof connect>[0]> = {}): Promise<Client> {
  const client = await connect({
    host: '127.0.0.1',
    port: server.port,
    username: 'dev',
    privateKey: userKey,
    knownHostsFile: knownHosts,
    hostAlias: 'envbox-webapp-1a2b',
    timeoutMs: 5000,
    ...extra,
  });
  clients.push(client);
  return client;
}

function sink(): Writable & { text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) });
  return Object.assign(w, { text: () => Buffer.concat(chunks).toString() });
}

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-ssh-'));
  home = join(dir, 'home');
  await mkdir(home);
  hostKey = await generateHostKey();
  const key = await ensureUserKey(join(dir, 'webapp-1a2b'));
  userKey = await readFile(key.privateKeyPath, 'utf8');
  userPublicKey = key.publicKey;
  knownHosts = join(dir, 'known_hosts');
  await writeKnownHosts(knownHosts, { publicKey: hostKey.publicKey, address: '127.0.0.1', alias: 'envbox-webapp-1a2b' });
});

afterEach(async () => {
  clients.splice(0).forEach((c) => c.end());
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('exec', () => {
  it('reports exit statuses and keeps stdout and stderr apart', async () => {
    const client = await login(await startServer());
    expect(await execCapture(client, 'true')).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await execCapture(client, 'echo out; echo err >&2; exit 3')).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' });
  });

  it('reports a command killed by a signal as 128 + the signal number', async () => {
    const client = await login(await startServer());
    expect((await execCapture(client, 'kill -TERM $$')).code).toBe(143);
    expect((await execCapture(client, 'kill -KILL $$')).code).toBe(137);
  });

  it('passes stdin through and its end as EOF, so cat finishes', async () => {
    const client = await login(await startServer());
    const out = sink();
    const stdin = Readable.from([Buffer.from('hello '), Buffer.from('world')]);
    expect(await exec(client, 'cat; echo done', { stdin, stdout: out, stderr: sink() })).toBe(0);
    expect(out.text()).toBe('hello worlddone\n');
    expect(await execCapture(client, 'cat')).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('exports env values literally and requests the PTY it is given', async () => {
    const server = await startServer();
    const client = await login(server);
    const out = sink();
    const env = { GREETING: `it's "$HOME" \\ \n done` };
    const pty = { rows: 40, cols: 100, term: 'xterm-256color' };
    expect(await exec(client, 'printf %s "$GREETING"', { stdout: out, stderr: sink(), env, pty })).toBe(0);
    expect(out.text()).toBe(env.GREETING);
    expect(server.ptys).toMatchObject([{ rows: 40, cols: 100, term: 'xterm-256color' }]);
  });

  it('fails with SSH_SESSION_FAILED when the connection drops mid-command', async () => {
    const server = await startServer();
    const client = await login(server);
    const running = execCapture(client, 'sleep 10');
    setTimeout(() => server.dropAll(), 100);
    await expect(running).rejects.toMatchObject({ code: 'SSH_SESSION_FAILED' });
  });
});

describe('connect', () => {
  it('refuses a host key other than the pinned one, at once and naming both fingerprints', async () => {
    const other = await generateHostKey();
    const server = await startServer({ key: other });
    const err = await login(server, { timeoutMs: 3000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EnvboxError);
    const mismatch = err as EnvboxError;
    expect(mismatch.code).toBe('HOSTKEY_MISMATCH');
    const blob = (line: string) => Buffer.from(line.split(' ')[1]!, 'base64');
    expect(mismatch.message).toContain('env "webapp-1a2b"');
    expect(mismatch.message).toContain(fingerprint(blob(hostKey.publicKey)));
    expect(mismatch.message).toContain(fingerprint(blob(other.publicKey)));
    expect(mismatch.hint).toMatch(/env destroy && env up.*intercepting/);
    expect(server.connections).toBe(1);
  });

  it('fails at once with SSH_AUTH_FAILED when the guest refuses the key', async () => {
    const stranger = (await generateHostKey()).publicKey;
    const server = await startServer({ allowedKey: stranger });
    await expect(login(server, { timeoutMs: 3000 })).rejects.toMatchObject({ code: 'SSH_AUTH_FAILED' });
    expect(server.connections).toBe(1);
  });

  it('keeps trying while nothing listens, then while connections are dropped, until sshd is up', async () => {
    const port = await freePort();
    const connecting = login({ port } as TestServer, { timeoutMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    // A port that accepts and hangs up at once: what a booting guest's socket activation or QEMU's hostfwd does.
    let dropped = 0;
    const flaky = createServer((sock) => {
      sock.destroy();
      if (++dropped === 2) flaky.close(() => void startServer({ port }));
    });
    flaky.listen(port, '127.0.0.1');
    const client = await connecting;
    expect(dropped).toBe(2);
    expect((await execCapture(client, 'echo up')).stdout).toBe('up\n');
  });

  it('gives up a connection that stays silent and logs in once sshd answers', async () => {
    const port = await freePort();
    // Accepts and never says a word: QEMU's user network forwarding into a guest whose sshd isn't up yet.
    const held: Socket[] = [];
    const silent = createServer((sock) => held.push(sock.on('error', () => {})));
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
    const started = Date.now();
    const connecting = login({ port } as TestServer, { timeoutMs: 30_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    // No new connections there; the one it holds stays open and silent.
    const closed = new Promise<void>((resolve) => silent.close(() => resolve()));
    await startServer({ port });
    const client = await connecting;
    expect(held).toHaveLength(1);
    held.forEach((sock) => sock.destroy());
    await closed;
    // The silent attempt was given up after ~2 s, not after the 30 s budget.
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await execCapture(client, 'echo heard')).stdout).toBe('heard\n');
  });

  it('keeps trying while the guest hangs up during login because it is still booting', async () => {
    const server = await startServer({ hangUps: 2, banner: 'System is booting up.' });
    const client = await login(server);
    expect(server.connections).toBe(3);
    expect((await execCapture(client, 'echo in')).stdout).toBe('in\n');

    const stuck = await startServer({ hangUps: Infinity, banner: 'System is booting up.' });
    const err = await login(stuck, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SSH_TIMEOUT' });
    expect((err as Error).message).toContain('closed the connection during login: System is booting up.');
  });

  it('gives up with SSH_TIMEOUT naming the last failure', async () => {
    const started = Date.now();
    const err = await login({ port: await freePort() } as TestServer, { timeoutMs: 400 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SSH_TIMEOUT' });
    expect((err as Error).message).toContain('ECONNREFUSED');
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    const connecting = login({ port: await freePort() } as TestServer, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('interrupted')), 100);
    await expect(connecting).rejects.toThrow('interrupted');
  });

  it('refuses to connect without a pinned key', async () => {
    const server = await startServer();
    await expect(login(server, { hostAlias: 'envbox-other' })).rejects.toMatchObject({ code: 'HOSTKEY_NOT_PINNED' });
    expect(server.connections).toBe(0);
  });
});

/** A local terminal made of streams: a TTY whose raw-mode switches are recorded. */
function fakeTerminal(tty: boolean) {
  const rawModes: boolean[] = [];
  const stdin = Object.assign(new PassThrough(), {
    isTTY: tty,
    isRaw: false,
    setRawMode: (raw: boolean) => rawModes.push(raw),
  });
  const stdout = Object.assign(sink(), { columns: 100, rows: 30 });
  const stderr = sink();
  const terminal: Terminal = { stdin, stdout, stderr };
  return { terminal, stdin, stdout, stderr, rawModes };
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 10));
}

describe('shell', () => {
  it('runs a PTY session in raw mode, forwards resizes and restores the terminal', async () => {
    const server = await startServer();
    const client = await login(server);
    const t = fakeTerminal(true);
    const session = shell(client, { terminal: t.terminal });
    t.stdin.write('echo ready\n');
    await until(() => t.stdout.text().includes('ready'));
    expect(t.rawModes).toEqual([true]);
    expect(server.ptys).toMatchObject([{ rows: 30, cols: 100 }]);
    Object.assign(t.stdout, { columns: 132, rows: 43 });
    t.stdout.emit('resize');
    await until(() => server.windows.length > 0);
    expect(server.windows).toMatchObject([{ rows: 43, cols: 132 }]);
    t.stdin.write('exit 7\n');
    expect(await session).toBe(7);
    expect(t.rawModes).toEqual([true, false]);
  });

  it('starts in the given folder, or at home with a note when it does not exist', async () => {
    const client = await login(await startServer());
    const project = join(dir, 'my project');
    await mkdir(project, { recursive: true });
    const there = fakeTerminal(false);
    there.stdin.end('pwd; echo "$APP_ENV"\n');
    expect(await shell(client, { cwd: project, env: { APP_ENV: 'dev' }, terminal: there.terminal })).toBe(0);
    expect(there.stdout.text()).toBe(`${project}\ndev\n`);
    expect(there.rawModes).toEqual([]);

    const missing = fakeTerminal(false);
    missing.stdin.end('pwd\n');
    expect(await shell(client, { cwd: '/no/such/folder', terminal: missing.terminal })).toBe(0);
    expect(missing.stdout.text()).toBe(`${home}\n`);
    expect(missing.stderr.text()).toContain('/no/such/folder is not a folder in the guest');
  });

  it('gets the exit status of a session that ends in the same read that opened it', async () => {
    const client = await login(await startServer({ instant: true }));
    for (const tty of [true, false]) {
      const t = fakeTerminal(tty);
      expect(await shell(client, { terminal: t.terminal })).toBe(7);
      expect(t.stdout.text()).toBe('at once\n');
      expect(t.rawModes).toEqual(tty ? [true, false] : []);
    }
  });

  it('restores the terminal when the session is lost', async () => {
    const server = await startServer();
    const client = await login(server);
    const t = fakeTerminal(true);
    const session = shell(client, { terminal: t.terminal });
    await until(() => t.rawModes.length > 0);
    server.dropAll();
    await expect(session).rejects.toMatchObject({ code: 'SSH_SESSION_FAILED' });
    expect(t.rawModes).toEqual([true, false]);
  });
});

describe('OpenSSH through the generated ssh_config', () => {
  const entry = (port: number) => ({
    alias: 'envbox-webapp-1a2b',
    hostName: '127.0.0.1',
    port,
    user: 'dev',
    identityFile: join(dir, 'webapp-1a2b', 'id_ed25519'),
    knownHostsFile: knownHosts,
  });

  it('logs in with the env key and the pinned host key, and refuses a different host key', async () => {
    const server = await startServer();
    const config = join(dir, 'ssh_config');
    const ssh = () => run('ssh', ['-F', config, '-o', 'BatchMode=yes', 'envbox-webapp-1a2b', 'echo "$HOME"; exit 5']);
    await writeSshConfigInclude(config, [entry(server.port)]);
    expect(await ssh()).toMatchObject({ code: 5, stdout: `${home}\n` });

    const impostor = await startServer({ key: await generateHostKey() });
    await writeSshConfigInclude(config, [entry(impostor.port)]);
    const refused = await ssh();
    expect(refused.code).toBe(255);
    expect(refused.stderr).toContain('Host key verification failed');
  });

  it('shares one connection between ssh calls through the control socket', async () => {
    const server = await startServer();
    const controlDir = join(dir, 'cm');
    const config = join(dir, 'ssh_config_mux');
    await writeSshConfigInclude(config, [{ ...entry(server.port) }], { controlDir });
    const ssh = (...args: string[]) => run('ssh', ['-F', config, '-o', 'BatchMode=yes', ...args], { timeoutMs: 10_000 });
    try {
      expect(await ssh('envbox-webapp-1a2b', 'echo one')).toMatchObject({ code: 0, stdout: 'one\n' });
      expect(await ssh('envbox-webapp-1a2b', 'echo two')).toMatchObject({ code: 0, stdout: 'two\n' });
      expect(server.connections).toBe(1);
    } finally {
      await ssh('-O', 'exit', 'envbox-webapp-1a2b');
    }
  });
});
