import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { env as runEnv, runProgram } from '../helpers/cli.js';

// One real VM (QEMU, TCG on hosts where KVM can't boot Debian) driven through the CLI: exec, the shared
// folder's ownership both ways and git, a port forward and the SOCKS proxy, provisioning,
// suspend/resume, halt/up, accel: kvm refused where KVM can't boot, and destroy. The VM
// image is built once and cached; the guest never gets outbound network.

let scratch: string;
let project: string;
const xdg = () => ({ XDG_STATE_HOME: join(scratch, 'state') });
const env = (args: string[], cwd = project) => runEnv(args, { cwd, env: xdg() });
const runCurl = (args: string[]) => runProgram('curl', args);

/** Runs a command in the guest as the env user; stdout, trimmed. */
async function guest(script: string): Promise<string> {
  const r = await env(['exec', '--', 'sh', '-c', script]);
  expect(r.code, `${script}\n${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

async function status() {
  const r = await env(['status', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).env as { state: string; id: string };
}

const qemuPidFile = (id: string) => join(scratch, 'state', 'envbox', 'envs', id, 'qemu', 'qemu.pid');
const mountsUnder = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${dir}/`))
    .reverse();
const alive = (pid: number) => existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu-system');

// A host port for the static forward; the agent reaches the VM over SSH channels.
const FORWARD_PORT = 18000 + (process.pid % 1000);

describe('env on QEMU VMs', () => {
  let id: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-e2e-vm-'));
    project = join(scratch, 'project');
    await mkdir(project);
    await writeFile(
      join(project, 'Envfile'),
      [
        'name: e2e-vm',
        'provider: vm',
        'cpus: 2',
        'memory: 1GiB',
        'network: { outbound: false }',
        `ports: [{ guest: 8000, host: ${FORWARD_PORT} }]`,
        'proxy: { socks: auto }',
        'provision:',
        '  - shell: echo "provisioned as $(id -un)" > /var/tmp/provision.log',
        '',
      ].join('\n'),
    );
    await writeFile(join(project, 'hello.txt'), 'from the host\n');
    // A repository made on the host by its owner (root here): the guest user must be able to use it.
    const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@e', ...args], { cwd: project });
    git('init', '-q');
    git('add', '.');
    git('commit', '-qm', 'first');
    const up = await env(['up']);
    expect(up.code, up.stderr).toBe(0);
    id = (await status()).id;
  });

  afterAll(async () => {
    const pidFile = id ? qemuPidFile(id) : undefined;
    const pid = pidFile && existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : undefined;
    await env(['destroy', '-f']);
    // Only the QEMU this test started, and only if destroy left it behind.
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    // A destroy that failed can leave the idmapped view of the project mounted in the state folder:
    // never let rm walk into it.
    for (const mount of mountsUnder(scratch)) execFileSync('umount', ['-l', mount]);
    await rm(scratch, { recursive: true, force: true });
  });

  it('runs commands and passes their exit status back', async () => {
    expect((await env(['exec', '--', 'true'])).code).toBe(0);
    expect((await env(['exec', '--', 'sh', '-c', 'exit 7'])).code).toBe(7);
    expect(await guest('id -un; nproc; uname -r')).toMatch(/^dev\n2\n\d+\.\d+/);
  });

  it("forwards a port and proxies SOCKS5 to a service on the guest's localhost", async () => {
    // A tiny HTTP responder bound only to the guest's loopback (systemd ships systemd-socket-activate).
    const reply = 'printf "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello from the vm\\n"';
    const start = await env(['exec', '--', 'sh', '-c', `nohup systemd-socket-activate -l 127.0.0.1:8000 --inetd -a sh -c '${reply}' >/dev/null 2>&1 &`]);
    expect(start.code, start.stderr).toBe(0);
    const curl = async (args: string[]) => {
      for (let i = 0; ; i++) {
        const r = await runCurl(args);
        if (r.code === 0 || i >= 50) return r;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };
    const direct = await curl(['-s', '--max-time', '10', `http://127.0.0.1:${FORWARD_PORT}/`]);
    expect(direct.stdout).toBe('hello from the vm\n');
    const proxy = JSON.parse((await env(['proxy', '--json'])).stdout).proxy as { address: string };
    const viaSocks = await curl(['-s', '--max-time', '10', '--socks5-hostname', proxy.address, 'http://e2e-vm:8000/']);
    expect(viaSocks.stdout).toBe('hello from the vm\n');
  });

  it('refuses accel: kvm on a host where KVM cannot boot, before creating anything', async () => {
    const other = join(scratch, 'kvm');
    await mkdir(other);
    await writeFile(join(other, 'Envfile'), 'name: e2e-kvm\nprovider: vm\naccel: kvm\nfolders: []\nnetwork: { outbound: false }\n');
    const r = await env(['up'], other);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/KVM/);
    const list = JSON.parse((await env(['list', '--json'])).stdout);
    expect(list.envs.map((e: { name: string }) => e.name)).not.toContain('e2e-kvm');
  });

  it('provisioned the guest on the first up', async () => {
    expect(await guest('cat /var/tmp/provision.log')).toBe('provisioned as root');
  });

  it('shares the project: the guest user owns it, and its writes land as the host owner', async () => {
    const owner = statSync(project);
    expect(await guest('cd ~/project && cat hello.txt && stat -c %U:%G hello.txt .')).toBe('from the host\ndev:dev\ndev:dev');
    await guest('echo from the guest > ~/project/made-in-guest.txt && mkdir ~/project/dir');
    for (const made of ['made-in-guest.txt', 'dir']) {
      const st = statSync(join(project, made));
      expect([st.uid, st.gid], made).toEqual([owner.uid, owner.gid]);
    }
    expect(readFileSync(join(project, 'made-in-guest.txt'), 'utf8')).toBe('from the guest\n');
    // Guest root is no one special on the host.
    await guest('sudo touch ~/project/made-by-guest-root');
    expect(statSync(join(project, 'made-by-guest-root')).uid).toBe(65534);
    // A host edit is visible at once.
    await writeFile(join(project, 'hello.txt'), 'edited on the host\n');
    expect(await guest('cat ~/project/hello.txt')).toBe('edited on the host');
  });

  it('lets git in the guest use the host repository (no "dubious ownership")', async () => {
    const out = await guest('cd ~/project && git status --porcelain && git log --format=%s');
    expect(out).toContain('?? made-in-guest.txt');
    // guest() trims, which eats the leading space of the first porcelain line.
    expect(out).toMatch(/^ ?M hello\.txt$/m);
    expect(out.split('\n').at(-1)).toBe('first');
  });

  it('suspends and resumes', async () => {
    expect((await env(['suspend'])).code).toBe(0);
    expect((await status()).state).toBe('frozen');
    expect((await env(['resume'])).code).toBe(0);
    expect((await status()).state).toBe('running');
    expect(await guest('echo awake')).toBe('awake');
  });

  it('halts and comes back up with its disk intact', async () => {
    await guest('echo kept > ~/on-disk.txt');
    const pid = Number(readFileSync(qemuPidFile(id), 'utf8'));
    const halt = await env(['halt']);
    expect(halt.code, halt.stderr).toBe(0);
    expect((await status()).state).toBe('stopped');
    expect(alive(pid)).toBe(false);
    const up = await env(['up']);
    expect(up.code, up.stderr).toBe(0);
    expect(await guest('cat ~/on-disk.txt; cat ~/project/made-in-guest.txt')).toBe('kept\nfrom the guest');
  });

  it('destroys the VM: no QEMU process, disk or state left', async () => {
    const pid = Number(readFileSync(qemuPidFile(id), 'utf8'));
    const stateDir = join(scratch, 'state', 'envbox', 'envs', id);
    const destroy = await env(['destroy', '-f']);
    expect(destroy.code, destroy.stderr).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(existsSync(stateDir)).toBe(false);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(stateDir);
    // The project itself is untouched.
    expect(readFileSync(join(project, 'made-in-guest.txt'), 'utf8')).toBe('from the guest\n');
  });
});
