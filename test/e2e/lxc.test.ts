import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { env as runEnv, runProgram, SHIM } from '../helpers/cli.js';

// The real thing: env up / ssh / exec / halt / suspend / destroy on unprivileged LXC containers,
// driven through the CLI as a user runs it. Guests never get outbound network.

interface Project {
  dir: string;
  env: (args: string[], opts?: { cwd?: string; input?: string }) => ReturnType<typeof runEnv>;
}

let scratch: string;
const xdg = () => ({ XDG_STATE_HOME: join(scratch, 'state') });

async function project(name: string, envfile: string, files: Record<string, string> = {}): Promise<Project> {
  const dir = join(scratch, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Envfile'), envfile);
  for (const [file, content] of Object.entries(files)) {
    await mkdir(join(dir, file, '..'), { recursive: true });
    await writeFile(join(dir, file), content, { mode: 0o755 });
  }
  return {
    dir,
    env: (args, opts = {}) => runEnv(args, { cwd: opts.cwd ?? dir, input: opts.input, env: xdg() }),
  };
}

async function statusOf(p: Project) {
  const r = await p.env(['status', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).env as { state: string; address: string; id: string; name: string };
}

const PROVISION_ENVFILE = `name: e2e-main
network: { outbound: false }
folders:
  - { host: ., guest: /home/dev/project }
env: { GREETING: "hello from the Envfile" }
provision:
  - shell: echo "once:$GREETING" >> /var/tmp/provision.log; echo kept > /tmp/provisioned
    name: first
  - script: setup.sh
    run: always
  - file: { from: notes.txt, to: /home/dev/notes/notes.txt }
  - shell: echo never >> /var/tmp/provision.log
    run: never
`;

describe('env on LXC containers', () => {
  let main: Project;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-e2e-'));
    main = await project('main', PROVISION_ENVFILE, {
      'setup.sh': '#!/bin/sh\necho "always:$(id -u)" >> /var/tmp/provision.log\n',
      'notes.txt': 'copied by a file step\n',
    });
    const up = await main.env(['up']);
    expect(up.code, up.stderr).toBe(0);
  });

  afterAll(async () => {
    // Destroy every env this file made, even after failures, then the scratch folder.
    for (const name of await readdir(scratch).catch(() => [] as string[])) {
      if (existsSync(join(scratch, name, 'Envfile'))) {
        await runEnv(['destroy', '-f'], { cwd: join(scratch, name), env: xdg() });
      }
    }
    await rm(scratch, { recursive: true, force: true });
  });

  it('brings the env up and reports it', async () => {
    const status = await statusOf(main);
    expect(status.state).toBe('running');
    expect(status.address).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    const list = JSON.parse((await main.env(['list', '--json'])).stdout);
    expect(list.envs.map((e: { name: string }) => e.name)).toEqual(['e2e-main']);
  });

  it('a second env up on a running env is a quick no-op', async () => {
    const r = await main.env(['up']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/is running at/);
    expect(r.stderr).not.toContain('Creating');
  });

  it('exec and ssh pass streams and exit status through', async () => {
    const r = await main.env(['exec', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    expect(r).toEqual({ code: 7, stdout: 'out\n', stderr: 'err\n' });
    const cat = await main.env(['ssh', '--', 'cat'], { input: 'piped\ninput\n' });
    expect(cat).toMatchObject({ code: 0, stdout: 'piped\ninput\n' });
    const quoted = await main.env(['exec', '--', 'printf', '%s|', 'a b', "it's", '$HOME', '']);
    expect(quoted.stdout).toBe("a b|it's|$HOME||");
  });

  it('starts in the guest folder matching the host folder', async () => {
    await mkdir(join(main.dir, 'sub', 'dir'), { recursive: true });
    const r = await main.env(['ssh', '--', 'pwd'], { cwd: join(main.dir, 'sub', 'dir') });
    expect(r.stdout).toBe('/home/dev/project/sub/dir\n');
  });

  it('shares the project folder with the right owner both ways', async () => {
    await writeFile(join(main.dir, 'from-host.txt'), 'host\n');
    const inside = await main.env(['exec', '--', 'stat', '-c', '%U:%G %a', '/home/dev/project/from-host.txt']);
    expect(inside.stdout).toBe('dev:dev 644\n');
    const made = await main.env(['exec', '--', 'sh', '-c', 'cd /home/dev/project && echo guest > from-guest.txt && mkdir -p gdir && ln -s from-guest.txt link && chmod 600 from-guest.txt']);
    expect(made.code, made.stderr).toBe(0);
    const st = statSync(join(main.dir, 'from-guest.txt'));
    const owner = statSync(main.dir);
    expect([st.uid, st.gid]).toEqual([owner.uid, owner.gid]);
    expect(st.mode & 0o777).toBe(0o600);
    expect(readFileSync(join(main.dir, 'link'), 'utf8')).toBe('guest\n');
  });

  it('git status works in the shared folder without a dubious-ownership complaint', async () => {
    const init = await runProgram('git', ['init', '-q', main.dir]);
    expect(init.code).toBe(0);
    const r = await main.env(['exec', '--', 'git', '-C', '/home/dev/project', 'status', '--short']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('from-host.txt');
  });

  it("the guest's inotify sees host edits natively", async () => {
    const watch = main.env([
      'exec', '--', 'timeout', '20', 'inotifywait', '-q', '-e', 'modify,create', '--format', '%e %f', '/home/dev/project',
    ]);
    // Give inotifywait a moment to set its watch, then edit on the host.
    for (let i = 0; i < 50; i++) {
      const ps = await main.env(['exec', '--', 'pgrep', '-x', 'inotifywait']);
      if (ps.code === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await writeFile(join(main.dir, 'watched.txt'), 'x');
    const r = await watch;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^(CREATE|MODIFY) watched\.txt$/m);
  });

  it('provisioned once, always, and never steps as written', async () => {
    const log = await main.env(['exec', '--', 'cat', '/var/tmp/provision.log']);
    expect(log.stdout).toBe('once:hello from the Envfile\nalways:0\n');
    // Steps run on a booted guest: what they leave in /tmp is not swept away by the boot's cleaning.
    expect((await main.env(['exec', '--', 'cat', '/tmp/provisioned'])).stdout).toBe('kept\n');
    const file = await main.env(['exec', '--', 'stat', '-c', '%U %s', '/home/dev/notes/notes.txt']);
    expect(file.stdout).toBe(`dev ${'copied by a file step\n'.length}\n`);
    const again = await main.env(['provision']);
    expect(again.code, again.stderr).toBe(0);
    const after = await main.env(['exec', '--', 'cat', '/var/tmp/provision.log']);
    expect(after.stdout).toBe('once:hello from the Envfile\nalways:0\nonce:hello from the Envfile\nalways:0\n');
    const only = await main.env(['provision', '--step', '4']);
    expect(only.code).toBe(0);
    expect((await main.env(['exec', '--', 'tail', '-n', '1', '/var/tmp/provision.log'])).stdout).toBe('never\n');
  });

  it('ssh-config works with the real OpenSSH client, host key pinned', async () => {
    const cfg = await main.env(['ssh-config']);
    expect(cfg.code, cfg.stderr).toBe(0);
    const file = join(scratch, 'ssh_config');
    await writeFile(file, cfg.stdout);
    const r = await runProgram('ssh', ['-F', file, 'e2e-main', 'echo', 'via-openssh', '$(id -un)']);
    expect(r).toMatchObject({ code: 0, stdout: 'via-openssh dev\n' });
    await runProgram('ssh', ['-F', file, '-O', 'exit', 'e2e-main']);
    const include = join(scratch, 'state', 'envbox', 'ssh_config');
    expect(readFileSync(include, 'utf8')).toContain('Host e2e-main');
  });

  it('halt then up; suspend then resume', async () => {
    const ok = async (args: string[]) => {
      const r = await main.env(args);
      expect(r.code, `env ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r;
    };
    const before = (await ok(['exec', '--', 'cat', '/var/tmp/provision.log'])).stdout;
    await ok(['halt']);
    expect((await statusOf(main)).state).toBe('stopped');
    await ok(['up']);
    await ok(['exec', '--', 'true']);
    // Starting a halted env runs `always` steps again, never `once` steps that already ran.
    expect((await ok(['exec', '--', 'cat', '/var/tmp/provision.log'])).stdout).toBe(`${before}always:0\n`);

    await ok(['suspend']);
    expect((await statusOf(main)).state).toBe('frozen');
    const refused = await main.env(['exec', '--', 'true']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('is not running');
    await ok(['resume']);
    await ok(['exec', '--', 'true']);
  });

  it('/tmp starts empty on each boot, and what the first command writes there stays while the guest finishes booting', async () => {
    const ok = async (args: string[]) => {
      const r = await main.env(args);
      expect(r.code, `env ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r;
    };
    await ok(['exec', '--', 'sh', '-c', 'echo old > /tmp/from-last-boot']);
    await ok(['halt']);
    await ok(['up', '--no-provision']);
    // Right after up, while systemd may still be booting: last boot's file is gone, a new one is written.
    expect((await ok(['exec', '--', 'sh', '-c', 'ls -A /tmp; echo new > /tmp/first-command'])).stdout).not.toContain('from-last-boot');
    await main.env(['exec', '--', 'sudo', 'timeout', '60', 'systemctl', 'is-system-running', '--wait']);
    expect((await ok(['exec', '--', 'cat', '/tmp/first-command'])).stdout).toBe('new\n');
  });

  it('refuses a changed host key instead of trusting it', async () => {
    const { id } = await statusOf(main);
    const known = join(scratch, 'state', 'envbox', 'envs', id, 'known_hosts');
    const original = readFileSync(known, 'utf8');
    const other = await runProgram('sh', ['-c', `ssh-keygen -q -t ed25519 -N '' -f ${join(scratch, 'otherkey')} && cat ${join(scratch, 'otherkey.pub')}`]);
    const [type, blob] = other.stdout.split(' ');
    try {
      await writeFile(known, original.replace(/ssh-ed25519 \S+/g, `${type} ${blob}`));
      const r = await main.env(['exec', '--', 'true']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/host key/i);
      expect(r.stderr).toContain('SHA256:');
    } finally {
      await writeFile(known, original);
    }
  });

  it('a failing provisioning step stops with its name and status, and leaves the env running', async () => {
    const p = await project('failing', 'name: e2e-fail\nnetwork: { outbound: false }\nfolders: []\nprovision:\n  - shell: "echo before; exit 3"\n    name: breaks\n  - shell: echo after > /tmp/after\n');
    const r = await p.env(['up']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[breaks] before');
    expect(r.stderr).toContain('provisioning step 1 (breaks) failed with exit status 3');
    expect((await statusOf(p)).state).toBe('running');
    expect((await p.env(['exec', '--', 'test', '-e', '/tmp/after'])).code).toBe(1);
    expect((await p.env(['destroy', '-f'])).code).toBe(0);
  });

  it('two envs at once: own address, own id range, no access to each other', async () => {
    const a = await project('pair-a', 'name: e2e-a\nnetwork: { outbound: false }\nfolders: []\n');
    const b = await project('pair-b', 'name: e2e-b\nnetwork: { outbound: false }\nfolders: []\n');
    const [ua, ub] = await Promise.all([a.env(['up']), b.env(['up'])]);
    expect(ua.code, ua.stderr).toBe(0);
    expect(ub.code, ub.stderr).toBe(0);
    const [sa, sb] = [await statusOf(a), await statusOf(b)];
    expect(sa.address).not.toBe(sb.address);
    const rootA = await a.env(['exec', '--', 'cat', '/proc/self/uid_map']);
    const rootB = await b.env(['exec', '--', 'cat', '/proc/self/uid_map']);
    const base = (map: string) => map.trim().split(/\s+/)[1];
    expect(base(rootA.stdout)).not.toBe(base(rootB.stdout));
    expect(base(rootA.stdout)).not.toBe('0');
    // Guest root of A is an unprivileged host uid of its own: even escaped to the host, it could not
    // read B's root filesystem (B's /root belongs to B's range, mode 0700).
    const record = (id: string) => JSON.parse(readFileSync(join(scratch, 'state', 'envbox', 'envs', id, 'env.json'), 'utf8'));
    const baseA = record(sa.id).machine.idmapBase as number;
    expect(baseA).toBeGreaterThan(0);
    expect(record(sb.id).machine.idmapBase).not.toBe(baseA);
    const asRootOfA = await runProgram('setpriv', [`--reuid=${baseA}`, `--regid=${baseA}`, '--clear-groups', 'ls', `/run/envbox/mnt/${sb.id}/rootfs/root`]);
    expect(asRootOfA.code).not.toBe(0);
    expect(asRootOfA.stderr).toContain('Permission denied');
    expect((await a.env(['destroy', '-f'])).code).toBe(0);
    expect((await b.env(['destroy', '-f'])).code).toBe(0);
  });

  it('concurrent env up in one folder: one creates, the others wait and report', async () => {
    const p = await project('concurrent', 'name: e2e-conc\nnetwork: { outbound: false }\nfolders: []\n');
    const results = await Promise.all([p.env(['up']), p.env(['up']), p.env(['up'])]);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    expect(results.filter((r) => r.stderr.includes('Creating the guest')).length).toBe(1);
    const list = JSON.parse((await p.env(['list', '--json'])).stdout);
    expect(list.envs.filter((e: { name: string }) => e.name === 'e2e-conc')).toHaveLength(1);
    expect((await p.env(['destroy', '-f'])).code).toBe(0);
  });

  it('Ctrl-C during env up undoes what that run made', async () => {
    const p = await project('interrupted', 'name: e2e-int\nnetwork: { outbound: false }\nfolders: []\n');
    const child = spawn(SHIM, ['up'], { cwd: p.dir, argv0: 'env', env: { ...process.env, ...xdg(), NO_COLOR: '1' } });
    let stderr = '';
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    await new Promise<void>((resolve) =>
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('==> Starting')) resolve();
      }),
    );
    child.kill('SIGINT');
    const code = await exited;
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('interrupted');
    const list = JSON.parse((await p.env(['list', '--json'])).stdout);
    expect(list.envs.filter((e: { name: string }) => e.name === 'e2e-int')).toEqual([]);
    const containers = await runProgram('lxc-ls', ['-P', '/run/envbox/lxc', '-1']);
    expect(containers.stdout).not.toContain('e2e-int');
    // And the next up simply works.
    const up = await p.env(['up']);
    expect(up.code, up.stderr).toBe(0);
    expect((await p.env(['destroy', '-f'])).code).toBe(0);
  });

  it('a bad Envfile creates nothing', async () => {
    const p = await project('bad', 'name: e2e-bad\nports: [0]\nfolders:\n  - { host: ../.., guest: /srv }\n');
    const before = await readdir(join(scratch, 'state', 'envbox', 'envs')).catch(() => []);
    const r = await p.env(['up']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Envfile:2:9 ports[0]: 0 is not a port');
    expect(r.stderr).toContain('Envfile:4:13 folders[0].host: ../.. is outside the project folder');
    expect(await readdir(join(scratch, 'state', 'envbox', 'envs')).catch(() => [])).toEqual(before);
  });

  it('destroy leaves no container, veth, nft rule, process or state behind', async () => {
    const { id, address } = await statusOf(main);
    const r = await main.env(['destroy', '-f']);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(scratch, 'state', 'envbox', 'envs', id))).toBe(false);
    const links = await runProgram('ip', ['-o', 'link']);
    expect(links.stdout).not.toMatch(new RegExp(id.slice(-8)));
    const nft = await runProgram('nft', ['list', 'ruleset']);
    expect(nft.stdout).not.toContain(address);
    const ps = await runProgram('ps', ['-eo', 'args']);
    expect(ps.stdout).not.toContain(id);
    expect((await statusOf(main)).state).toBe('not created');
    expect(readFileSync(join(scratch, 'state', 'envbox', 'ssh_config'), 'utf8')).not.toContain('Host e2e-main');
  });
});
