import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, runOk } from '../../../src/util/exec.js';
import { env as runEnv, ROOT, type CliResult } from '../../helpers/cli.js';

/**
 * The incus provider on a real Incus daemon, through the CLI as a user runs it. scripts/incus-ci.sh
 * installs and starts the daemon when this host has none; whatever the tests made (instances, images,
 * trust entries, the HTTPS listener, and the daemon itself if they started it) is removed in afterAll,
 * also when a test failed. Guests get no network device at all (network.outbound: false).
 */
const runnable = process.getuid?.() === 0 && existsSync('/etc/debian_version');
const TAG = randomBytes(3).toString('hex');
const HTTPS = '127.0.0.1:8443';

let scratch = '';
let startedPid: number | undefined;
let httpsBefore = '';
const trustNames: string[] = [];

const xdg = (config = 'config') => ({ XDG_STATE_HOME: join(scratch, 'state'), XDG_CONFIG_HOME: join(scratch, config) });
const incus = (...args: string[]) => runOk('incus', args, { timeoutMs: 120_000 });

interface Project {
  dir: string;
  env: (args: string[], config?: string) => Promise<CliResult>;
}

async function project(name: string, envfile: string, owner = 1000): Promise<Project> {
  const dir = join(scratch, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Envfile'), `name: ${name}-${TAG}\nprovider: incus\nnetwork: { outbound: false }\n${envfile}`);
  await writeFile(join(dir, 'hello.txt'), 'hello from the host\n');
  await run('chown', ['-R', `${owner}:${owner}`, dir]);
  return { dir, env: (args, config) => runEnv(args, { cwd: dir, env: xdg(config) }) };
}

const ok = (r: CliResult) => {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
};

/** Instances whose envbox id carries this run's tag. */
async function ourInstances(): Promise<string[]> {
  const list = JSON.parse((await incus('query', '/1.0/instances?recursion=1')).stdout) as { name: string; config: Record<string, string> }[];
  return list.filter((i) => i.config['user.envbox.id']?.includes(TAG)).map((i) => i.name);
}

async function envboxImages(): Promise<string[]> {
  const list = JSON.parse((await incus('query', '/1.0/images?recursion=1')).stdout) as { fingerprint: string; properties: Record<string, string> }[];
  return list.filter((i) => i.properties['envbox.key']).map((i) => i.fingerprint);
}

async function trustToken(): Promise<string> {
  const name = `envbox-it-${TAG}-${trustNames.length}`;
  trustNames.push(name);
  return (await incus('config', 'trust', 'add', name, '--quiet')).stdout.trim().split('\n').pop()!;
}

describe.skipIf(!runnable)('provider: incus on a real Incus daemon', () => {
  let imagesBefore: string[] = [];

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-incus-it-'));
    const up = await runOk(join(ROOT, 'scripts/incus-ci.sh'), ['up'], { timeoutMs: 900_000 });
    startedPid = Number(/^started (\d+)/m.exec(up.stdout)?.[1]) || undefined;
    httpsBefore = (await incus('config', 'get', 'core.https_address')).stdout.trim();
    if (httpsBefore !== HTTPS) await incus('config', 'set', 'core.https_address', HTTPS);
    imagesBefore = await envboxImages();
  }, 900_000);

  afterAll(async () => {
    for (const name of await ourInstances().catch(() => [])) await run('incus', ['delete', '--force', name]);
    // Images this run imported that nothing uses any more (destroy should have removed them already).
    for (const fp of (await envboxImages().catch(() => [])).filter((f) => !imagesBefore.includes(f))) await run('incus', ['image', 'delete', fp]);
    const trusted = JSON.parse((await run('incus', ['query', '/1.0/certificates?recursion=1'])).stdout || '[]') as { name: string; fingerprint: string }[];
    for (const cert of trusted.filter((c) => c.name.startsWith(`envbox-it-${TAG}`))) await run('incus', ['config', 'trust', 'remove', cert.fingerprint]);
    for (const name of trustNames) await run('incus', ['config', 'trust', 'revoke-token', name]);
    if (httpsBefore !== HTTPS) await run('incus', ['config', httpsBefore ? 'set' : 'unset', 'core.https_address', ...(httpsBefore ? [httpsBefore] : [])]);
    if (startedPid) await runOk(join(ROOT, 'scripts/incus-ci.sh'), ['down'], { timeoutMs: 120_000 });
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }, 300_000);

  describe('a local env with a shared folder', () => {
    let p: Project;
    const forwardPort = 19000 + (process.pid % 1000);
    beforeAll(async () => {
      p = await project('local', `ports: [{ guest: 8000, host: ${forwardPort} }]\nproxy: { socks: auto }\n`);
    });

    it('comes up, and ssh and exec work as the guest user', async () => {
      ok(await p.env(['up']));
      expect(ok(await p.env(['exec', '--', 'sh', '-c', 'id -un; hostname; sudo -n id -u; cat ~/project/hello.txt']))).toBe(`dev\nlocal-${TAG}\n0\nhello from the host\n`);
      expect((await p.env(['ssh', '--', 'sh', '-c', 'exit 7'])).code).toBe(7);
      const status = JSON.parse(ok(await p.env(['status', '--json']))).env;
      expect(status).toMatchObject({ state: 'running', provider: 'incus', address: '127.0.0.1' });
    });

    it('has no network device but loopback: guest traffic cannot leave', async () => {
      expect(ok(await p.env(['exec', '--', 'sh', '-c', 'ls /sys/class/net']))).toBe('lo\n');
    });

    it("forwards a port and proxies SOCKS5 to a service on the guest's localhost, through the agent", async () => {
      // A tiny HTTP responder bound only to the guest's loopback (systemd ships systemd-socket-activate).
      const reply = 'printf "HTTP/1.0 200 OK\\r\\n\\r\\nhello from incus\\n"';
      ok(await p.env(['exec', '--', 'sh', '-c', `nohup systemd-socket-activate -l 127.0.0.1:8000 --inetd -a sh -c '${reply}' >/dev/null 2>&1 &`]));
      const curl = async (args: string[]) => {
        for (let i = 0; ; i++) {
          const r = await run('curl', ['-s', '--max-time', '10', ...args]);
          if (r.code === 0 || i >= 50) return r;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      };
      expect((await curl([`http://127.0.0.1:${forwardPort}/`])).stdout).toBe('hello from incus\n');
      const proxy = JSON.parse(ok(await p.env(['proxy', '--json']))).proxy as { address: string };
      expect((await curl(['--socks5-hostname', proxy.address, `http://local-${TAG}:8000/`])).stdout).toBe('hello from incus\n');
    });

    it('shares the folder with one owner on both sides (shift=true), and git trusts it', async () => {
      ok(await p.env(['exec', '--', 'sh', '-c', 'echo guest > ~/project/from-guest.txt']));
      const made = await stat(join(p.dir, 'from-guest.txt'));
      expect([made.uid, made.gid]).toEqual([1000, 1000]);
      await writeFile(join(p.dir, 'from-host.txt'), 'host\n');
      await chown(join(p.dir, 'from-host.txt'), 1000, 1000);
      await runOk('git', ['init', '-q', p.dir]);
      await run('chown', ['-R', '1000:1000', p.dir]);
      const seen = ok(await p.env(['exec', '--', 'sh', '-c', 'cd ~/project && stat -c %U:%G from-host.txt . && git status --porcelain']));
      expect(seen.split('\n').slice(0, 2)).toEqual(['dev:dev', 'dev:dev']);
      expect(seen).toContain('?? from-guest.txt');
      const instance = (await ourInstances())[0]!;
      expect((await incus('config', 'device', 'get', instance, 'envbox-folder-0', 'shift')).stdout.trim()).toBe('true');
      expect((await incus('config', 'get', instance, 'security.idmap.isolated')).stdout.trim()).toBe('true');
    });

    it('halts and comes up again with its files, suspends and resumes', async () => {
      ok(await p.env(['exec', '--', 'sh', '-c', 'echo kept > ~/kept.txt']));
      ok(await p.env(['halt']));
      expect(JSON.parse(ok(await p.env(['status', '--json']))).env.state).toBe('stopped');
      ok(await p.env(['up']));
      expect(ok(await p.env(['exec', '--', 'cat', '/home/dev/kept.txt']))).toBe('kept\n');
      ok(await p.env(['suspend']));
      expect(JSON.parse(ok(await p.env(['status', '--json']))).env.state).toBe('frozen');
      ok(await p.env(['resume']));
      expect(ok(await p.env(['exec', '--', 'true']))).toBe('');
    });

    it('destroys leaving nothing in the daemon', async () => {
      ok(await p.env(['destroy', '--force']));
      expect(await ourInstances()).toEqual([]);
      expect((await envboxImages()).filter((f) => !imagesBefore.includes(f))).toEqual([]);
      expect(existsSync(join(scratch, 'state', 'envbox', 'envs', `local-${TAG}`))).toBe(false);
    });
  });

  it('refuses a root-owned project folder before creating anything', async () => {
    const p = await project('rootowned', '', 0);
    const r = await p.env(['up']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('belongs to root, and Incus would have to map host root into the guest');
    expect(await ourInstances()).toEqual([]);
  });

  describe('the same daemon as a remote over HTTPS', () => {
    let p: Project;
    beforeAll(async () => {
      p = await project('remote', 'remote: loop\nfolders: []\n');
    });

    it('adds the remote with a trust token and pins its certificate', async () => {
      const out = ok(await p.env(['remote', 'add', 'loop', `https://${HTTPS}`, '--token', await trustToken()]));
      expect(out).toMatch(/remote loop is ready \(server certificate [0-9a-f]{12}… pinned\)/);
      const remotes = JSON.parse(ok(await p.env(['remote', 'list', '--json']))).remotes;
      expect(remotes).toMatchObject([{ name: 'loop', url: `https://${HTTPS}`, server: 'incus' }]);
      expect((await stat(join(scratch, 'config', 'envbox', 'client.key'))).mode & 0o777).toBe(0o600);
    });

    it('refuses a folder that asks for mode: mount on a remote before creating anything', async () => {
      const q = await project('remotefolders', 'remote: loop\nfolders: [{ host: ., guest: /home/dev/project, mode: mount }]\n');
      const r = await q.env(['up']);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("a remote daemon can't mount this host's folders");
      expect(r.stderr).toContain('on a remote daemon they default to mode: sync');
      expect(await ourInstances()).toEqual([]);
    });

    it('syncs the project folder to a remote env (mode: sync by default), owned by the guest user', async () => {
      const q = await project('remotesync', 'remote: loop\n');
      try {
        ok(await q.env(['up']));
        const status = JSON.parse(ok(await q.env(['status', '--json'])));
        expect(status.env.folders).toMatchObject([{ guest: '/home/dev/project', mode: 'sync' }]);
        expect(ok(await q.env(['exec', '--', 'stat', '-c', '%U:%G %n', '/home/dev/project/hello.txt']))).toBe('dev:dev /home/dev/project/hello.txt\n');
        expect(ok(await q.env(['exec', '--', 'cat', '/home/dev/project/hello.txt']))).toBe('hello from the host\n');
        await writeFile(join(q.dir, 'later.txt'), 'written after up\n');
        await run('chown', ['1000:1000', join(q.dir, 'later.txt')]);
        await rm(join(q.dir, 'hello.txt'));
        ok(await q.env(['sync', '--wait']));
        expect(ok(await q.env(['exec', '--', 'cat', '/home/dev/project/later.txt']))).toBe('written after up\n');
        expect((await q.env(['exec', '--', 'test', '-e', '/home/dev/project/hello.txt'])).code).toBe(1);
      } finally {
        ok(await q.env(['destroy', '--force']));
      }
      expect(await ourInstances()).toEqual([]);
    });

    it('runs up, exec and destroy through the proxy device', async () => {
      ok(await p.env(['up']));
      expect(ok(await p.env(['exec', '--', 'id', '-un']))).toBe('dev\n');
      const machine = JSON.parse(await readFile(join(scratch, 'state', 'envbox', 'envs', JSON.parse(ok(await p.env(['status', '--json']))).env.id, 'env.json'), 'utf8')).machine;
      expect(machine).toMatchObject({ address: '127.0.0.1', daemon: { remote: 'loop' } });
      ok(await p.env(['destroy', '--force']));
      expect(await ourInstances()).toEqual([]);
      expect((await envboxImages()).filter((f) => !imagesBefore.includes(f))).toEqual([]);
    });

    it('rejects a used or wrong token with a clear error', async () => {
      const token = await trustToken();
      const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(token, 'base64').toString()), secret: '0'.repeat(64) })).toString('base64');
      const r = await p.env(['remote', 'add', 'other', `https://${HTTPS}`, '--token', forged], 'config-other');
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`https://${HTTPS} refused the trust token`);
      expect(r.stderr).toContain('incus config trust add NAME');
    });

    it('rejects a server whose certificate is not the pinned one', async () => {
      const file = join(scratch, 'config', 'envbox', 'remotes.json');
      const remotes = JSON.parse(await readFile(file, 'utf8'));
      const other = (await runOk('sh', ['-c', 'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=other -keyout /dev/null 2>/dev/null'])).stdout;
      remotes.remotes.loop.certificate = other;
      await writeFile(file, JSON.stringify(remotes));
      const r = await p.env(['up']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`the server at https://${HTTPS} no longer presents the certificate pinned for it`);
      expect(await ourInstances()).toEqual([]);
    });
  });
});
