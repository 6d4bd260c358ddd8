import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lxcProvider } from '../../../src/providers/lxc/index.js';
import { envPaths, type LxcMachine } from '../../../src/providers/lxc/layout.js';
import { freezerState, initFromMonitor } from '../../../src/providers/lxc/lxc.js';
import { mountPoints } from '../../../src/providers/lxc/rootfs.js';
import type { GuestSpec } from '../../../src/providers/provider.js';
import { run, runOk } from '../../../src/util/exec.js';
import { silentProgress } from '../../../src/util/progress.js';
import { testRootfs } from '../../helpers/lxc-rootfs.js';

/**
 * Real unprivileged LXC containers from a Debian rootfs, on a bridge and nft table of the test's own
 * (ENVBOX_BRIDGE) with host state in a temp XDG_STATE_HOME. Guests have no outbound network; the tests
 * only talk to addresses on that bridge. afterAll removes everything even when a test failed.
 */
const runnable = process.getuid?.() === 0 && existsSync('/usr/bin/lxc-start');
const BRIDGE = `ebxt${randomBytes(2).toString('hex')}`;
const hostGit = existsSync('/usr/bin/git') ? '/usr/bin/git' : undefined;

let tmp = '';
let rootfs = '';
let userKey = '';
let hostKey = { privateKey: '', publicKey: '' };
const saved = { XDG_STATE_HOME: process.env.XDG_STATE_HOME, ENVBOX_BRIDGE: process.env.ENVBOX_BRIDGE, ENVBOX_LXC_ROOTFS: process.env.ENVBOX_LXC_ROOTFS };
const made = new Map<string, GuestSpec>();
const machines = new Map<string, LxcMachine>();

async function makeSpec(name: string, over: Partial<GuestSpec> = {}): Promise<GuestSpec> {
  const id = `${name}-${randomBytes(4).toString('hex')}`;
  const stateDir = join(tmp, 'state', 'envbox', 'envs', id);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const spec: GuestSpec = {
    id,
    hostname: name,
    stateDir,
    rootfs,
    user: { name: 'dev', uid: 1000, gid: 1000, hostUid: 0, hostGid: 0, home: '/home/dev', authorizedKey: await readFile(`${userKey}.pub`, 'utf8') },
    folders: [],
    network: { outbound: false },
    hostKey,
    ...over,
  };
  made.set(id, spec);
  return spec;
}

async function up(spec: GuestSpec): Promise<LxcMachine> {
  const machine = (await lxcProvider.create(spec, silentProgress)) as LxcMachine;
  machines.set(spec.id, machine);
  await lxcProvider.start(spec, machine, silentProgress);
  return machine;
}

const sshArgs = (addr: string, user = 'dev') => [
  '-i', userKey,
  '-o', `UserKnownHostsFile=${join(tmp, 'known_hosts')}`,
  '-o', 'StrictHostKeyChecking=yes',
  '-o', 'BatchMode=yes',
  '-o', 'ConnectTimeout=3',
  '-o', 'LogLevel=ERROR',
  `${user}@${addr}`,
];

async function ssh(addr: string, command: string) {
  return run('ssh', [...sshArgs(addr), command], { timeoutMs: 30_000 });
}

/** Pins the host key for the address and waits until sshd accepts the user's key. */
async function waitForSsh(addr: string): Promise<void> {
  const [type, key] = hostKey.publicKey.split(' ');
  await writeFile(join(tmp, 'known_hosts'), `${addr} ${type} ${key}\n`, { flag: 'a' });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const result = await ssh(addr, 'true');
    if (result.code === 0) return;
    if (Date.now() > deadline) throw new Error(`ssh to ${addr} never worked: ${result.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Whatever the provider left (or a failed test stranded): stopped, unmounted, removed. */
async function hardCleanup(spec: GuestSpec): Promise<void> {
  const paths = envPaths(spec);
  await lxcProvider.destroy(spec, machines.get(spec.id)).catch(() => {});
  await run('lxc-stop', ['-P', paths.lxcpath, '-n', spec.id, '-k']);
  for (const point of [...(await mountPoints())].filter((p) => p.startsWith(`${paths.mnt}/`)).sort().reverse()) {
    await run('umount', ['-l', point]);
  }
  await rm(paths.configDir, { recursive: true, force: true });
  const veth = machines.get(spec.id)?.veth;
  if (veth) await run('ip', ['link', 'del', veth]);
}

describe.skipIf(!runnable)('LXC provider with real containers', () => {
  let a: GuestSpec;
  let aMachine: LxcMachine;
  let project = '';

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'envbox-lxc-it-'));
    process.env.XDG_STATE_HOME = join(tmp, 'state');
    process.env.ENVBOX_BRIDGE = BRIDGE;
    delete process.env.ENVBOX_LXC_ROOTFS;
    rootfs = await testRootfs();
    userKey = join(tmp, 'id_ed25519');
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', userKey]);
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(tmp, 'host_key')]);
    hostKey = { privateKey: await readFile(join(tmp, 'host_key'), 'utf8'), publicKey: (await readFile(join(tmp, 'host_key.pub'), 'utf8')).trim() };
    // A space in the host path: it reaches the helper's argv and (in copy mode) lxc.mount.entry as \040.
    project = join(tmp, 'my project');
    await mkdir(join(tmp, 'tools'), { recursive: true });
    await mkdir(project);
    if (hostGit) await copyFile(hostGit, join(tmp, 'tools', 'git'));
    a = await makeSpec('alpha', {
      folders: [
        { host: project, guest: '/home/dev/src/project' },
        { host: join(tmp, 'tools'), guest: '/opt/envbox-tools' },
      ],
    });
    const changes = await lxcProvider.prepareHost(a, silentProgress);
    expect(changes).toContain(`created bridge ${BRIDGE}`);
  }, 600_000);

  afterAll(async () => {
    for (const spec of made.values()) await hardCleanup(spec);
    await run('nft', ['delete', 'table', 'inet', BRIDGE]);
    await run('ip', ['link', 'del', BRIDGE]);
    if (tmp) await rm(tmp, { recursive: true, force: true });
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });

  it('finds nothing missing on the host once prepared', async () => {
    const checks = await lxcProvider.checkHost();
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks.find((c) => c.name === 'bridge')?.detail).toMatch(new RegExp(`^${BRIDGE} `));
  });

  it('creates and starts a container that runs with its address', async () => {
    aMachine = await up(a);
    expect(await lxcProvider.state(a)).toBe('running');
    expect(aMachine.rootfsMode).toBe('overlay');
    const info = await runOk('lxc-info', ['-P', envPaths(a).lxcpath, '-n', a.id, '-iH']);
    expect(info.stdout.trim().split('\n')).toContain(aMachine.address);
    const network = JSON.parse(await readFile(join(tmp, 'state', 'envbox', 'host', 'network.json'), 'utf8'));
    expect(network.leases[a.id]).toBe(aMachine.address);
    expect(network.bridge).toBe(BRIDGE);
    const pid = await lxcProvider.netnsPid!(a);
    expect(pid).toBeGreaterThan(1);
    // Found from the monitor lxc-start names in its pid file: the same init lxc-info knows.
    expect(await initFromMonitor(envPaths(a), a.id)).toBe(pid);
    expect((await runOk('lxc-info', ['-P', envPaths(a).lxcpath, '-n', a.id, '-pH'])).stdout.trim()).toBe(String(pid));
    expect(await freezerState(pid!)).toBe('RUNNING');
    // Quick ACKs both ways on the bridge's subnet (the guest's set by the start hook before init ran).
    const subnet = network.subnet as string;
    const hostRoute = await runOk('ip', ['route', 'show', subnet, 'dev', BRIDGE]);
    expect(hostRoute.stdout).toMatch(/ quickack 1\b/);
    const guestRoute = await runOk('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', 'route', 'show', subnet, 'dev', 'eth0']);
    expect(guestRoute.stdout).toContain(`src ${aMachine.address}`);
    expect(guestRoute.stdout).toMatch(/ quickack 1\b/);
  });

  it('accepts an OpenSSH key login with the pinned host key', async () => {
    await waitForSsh(aMachine.address);
    const result = await ssh(
      aMachine.address,
      'id -un; hostname; getent hosts $(hostname); sudo -n id -u; stat -c %U:%a /etc/ssh/ssh_host_ed25519_key; sudo -n systemctl is-system-running --wait',
    );
    expect(result.stdout.replace(/[ \t]+/g, ' ').split('\n')).toEqual(['dev', 'alpha', `${aMachine.address} alpha`, '0', 'root:600', 'running', '']);
  });

  it('shares folders with the right owner both ways, and git trusts the repository', async () => {
    await writeFile(join(project, 'from-host.txt'), 'host\n');
    const seen = await ssh(aMachine.address, 'cd ~/src/project && stat -c %U:%G from-host.txt && echo guest > from-guest.txt && stat -c %U:%G . ~/src');
    expect(seen.stdout.split('\n')).toEqual(['dev:dev', 'dev:dev', 'dev:dev', '']);
    const onHost = await stat(join(project, 'from-guest.txt'));
    expect([onHost.uid, onHost.gid]).toEqual([0, 0]);
    if (!hostGit) {
      console.warn('git is not installed on the host: skipped the git status check');
      return;
    }
    await runOk('git', ['init', '-q', project]);
    await runOk('git', ['-C', project, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-q', '--allow-empty', '-m', 'x']);
    // The image's git if it has one, else the host's binary through the second shared folder.
    const status = await ssh(aMachine.address, '$(command -v git || echo /opt/envbox-tools/git) -C ~/src/project status --porcelain');
    expect(status.stderr).not.toMatch(/dubious ownership/);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('?? from-guest.txt');
  });

  it("delivers a host edit to the guest's inotify", async () => {
    const watcher = spawn('ssh', [...sshArgs(aMachine.address), 'inotifywait -t 20 -e close_write --format %f ~/src/project'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      let err = '';
      watcher.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const established = new Promise<void>((resolve) => watcher.stderr.on('data', (d: Buffer) => (err += d.toString()).includes('Watches established') && resolve()));
      const exited = new Promise<number | null>((resolve) => watcher.on('close', resolve));
      await established;
      await writeFile(join(project, 'edited-on-host.txt'), 'changed\n');
      expect(await exited).toBe(0);
      expect(out.trim()).toBe('edited-on-host.txt');
    } finally {
      if (watcher.exitCode === null) watcher.kill();
    }
  });

  it('freezes and thaws', async () => {
    await lxcProvider.freeze(a, aMachine);
    expect(await lxcProvider.state(a)).toBe('frozen');
    expect(await freezerState((await lxcProvider.netnsPid!(a))!)).toBe('FROZEN');
    expect((await runOk('lxc-info', ['-P', envPaths(a).lxcpath, '-n', a.id, '-sH'])).stdout.trim()).toBe('FROZEN');
    await lxcProvider.unfreeze(a, aMachine);
    expect(await lxcProvider.state(a)).toBe('running');
    expect((await ssh(aMachine.address, 'true')).code).toBe(0);
  });

  it('stops cleanly and starts again with the guest files kept', async () => {
    expect((await ssh(aMachine.address, 'sudo -n sh -c "echo kept > /var/tmp/marker"')).code).toBe(0);
    await lxcProvider.stop(a, aMachine, { timeoutMs: 20_000, force: false });
    expect(await lxcProvider.state(a)).toBe('stopped');
    const paths = envPaths(a);
    expect([...(await mountPoints())].filter((p) => p.startsWith(paths.mnt))).toEqual([]);
    expect((await run('ip', ['link', 'show', 'dev', aMachine.veth])).code).not.toBe(0);
    await lxcProvider.start(a, aMachine, silentProgress);
    await waitForSsh(aMachine.address);
    expect((await ssh(aMachine.address, 'cat /var/tmp/marker')).stdout).toBe('kept\n');
  });

  it('runs a second env beside it with its own address, id range and private rootfs', async () => {
    const b = await makeSpec('beta', { memoryBytes: 256 * 2 ** 20 });
    const bMachine = await up(b);
    expect(bMachine.address).not.toBe(aMachine.address);
    expect(Math.abs(bMachine.idmapBase - aMachine.idmapBase)).toBeGreaterThanOrEqual(65536);
    await waitForSsh(bMachine.address);
    // B's /etc/shadow (guest root:shadow, 0640) as the host sees it through B's mounted rootfs:
    // B's root range reads it, A's root range is refused.
    const shadow = join(envPaths(b).rootfs, 'etc', 'shadow');
    const as = (uid: number) => run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'cat', shadow]);
    expect((await as(bMachine.idmapBase)).code).toBe(0);
    const denied = await as(aMachine.idmapBase);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/Permission denied/);
    const limit = (await ssh(bMachine.address, 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes')).stdout.trim();
    expect(Number(limit)).toBe(256 * 2 ** 20);
    await lxcProvider.destroy(b, bMachine);
    expect(await lxcProvider.state(b)).toBe('absent');
  });

  it('shares the image in copy mode too (no idmount helper)', async () => {
    process.env.ENVBOX_LXC_ROOTFS = 'copy';
    try {
      const shared = join(tmp, 'copy-project');
      await mkdir(shared);
      await chown(shared, 1000, 1000);
      const c = await makeSpec('gamma', {
        folders: [{ host: shared, guest: '/home/dev/project' }],
        user: { ...a.user, hostUid: 1000, hostGid: 1000 },
      });
      try {
        const cMachine = await up(c);
        expect(cMachine.rootfsMode).toBe('copy');
        await waitForSsh(cMachine.address);
        const result = await ssh(cMachine.address, 'stat -c %U ~/project && touch ~/project/x && stat -c %U /etc/ssh/ssh_host_ed25519_key');
        expect(result.stdout).toBe('dev\nroot\n');
        expect((await stat(join(shared, 'x'))).uid).toBe(1000);
      } finally {
        await lxcProvider.destroy(c, machines.get(c.id));
      }
    } finally {
      delete process.env.ENVBOX_LXC_ROOTFS;
    }
  });

  it('destroy leaves no container, mount, veth, rule, reservation or state behind', async () => {
    await lxcProvider.destroy(a, aMachine);
    const paths = envPaths(a);
    expect(await lxcProvider.state(a)).toBe('absent');
    expect((await run('lxc-info', ['-P', paths.lxcpath, '-n', a.id])).code).not.toBe(0);
    expect(existsSync(paths.configDir)).toBe(false);
    expect(existsSync(paths.data)).toBe(false);
    expect(existsSync(paths.mnt)).toBe(false);
    expect([...(await mountPoints())].filter((p) => p.includes(a.id))).toEqual([]);
    expect((await run('ip', ['link', 'show', 'dev', aMachine.veth])).code).not.toBe(0);
    // The last env is gone: so are the bridge, the nft table and the host state files.
    expect((await run('ip', ['link', 'show', 'dev', BRIDGE])).code).not.toBe(0);
    expect((await run('nft', ['list', 'table', 'inet', BRIDGE])).code).not.toBe(0);
    expect(existsSync(join(tmp, 'state', 'envbox', 'host', 'idmaps.json'))).toBe(false);
    expect(existsSync(join(tmp, 'state', 'envbox', 'host', 'network.json'))).toBe(false);
    const cgroups = await run('sh', ['-c', `ls -d /sys/fs/cgroup/lxc.*.${a.id}* /sys/fs/cgroup/*/lxc.*.${a.id}* 2>/dev/null`]);
    expect(cgroups.stdout).toBe('');
  });

  it('a failed create undoes what it did', async () => {
    const broken = await makeSpec('broken', { rootfs: join(tmp, 'no-such-image') });
    await expect(lxcProvider.create(broken, silentProgress)).rejects.toMatchObject({ code: 'IMAGE_GONE' });
    expect(await lxcProvider.state(broken)).toBe('absent');
    expect(existsSync(join(tmp, 'state', 'envbox', 'host', 'idmaps.json'))).toBe(false);
    expect(existsSync(join(tmp, 'state', 'envbox', 'host', 'network.json'))).toBe(false);
    expect((await run('ip', ['link', 'show', 'dev', BRIDGE])).code).not.toBe(0);
  });
});
