import { appendFile, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { EnvboxError } from '../../util/errors.js';
import { findOnPath, run } from '../../util/exec.js';
import type { Progress } from '../../util/progress.js';
import type { GuestSpec, HostCheck } from '../provider.js';
import { describeNetwork, ensureNetwork } from './bridge.js';
import { apparmorEnabled, cgroupLayout, overlayOnIdmapped } from './hostfacts.js';
import { withHostLock } from './hoststate.js';
import { poolOverlaps, POOL_BASE, POOL_SLOTS, poolSubidLine, SLOT_SIZE, subidCoversPool } from './idmap.js';
import { idmountAvailable, idmountHelper } from './idmount.js';

const POOL_LAST = POOL_BASE + POOL_SLOTS * SLOT_SIZE - 1;
const SUBID_FIX = `usermod --add-subuids ${POOL_BASE}-${POOL_LAST} --add-subgids ${POOL_BASE}-${POOL_LAST} root`;

async function installed(cmd: string, args: string[]): Promise<string | undefined> {
  const result = await run(cmd, args).catch(() => undefined);
  return result && result.code === 0 ? (result.stdout || result.stderr).trim().split('\n')[0] : undefined;
}

/** Whether every one of `names` is an executable on the PATH. */
const onPath = (...names: string[]) => names.every((name) => findOnPath(name) !== undefined);

/** The tool's version line, or with `brief` only whether it is on the PATH (no process started). */
async function tool(cmd: string, brief: boolean): Promise<string | undefined> {
  if (brief) return onPath(cmd) ? `${cmd} (found on the PATH)` : undefined;
  return installed(cmd, ['--version']);
}

async function subidFile(file: string): Promise<{ covered: boolean; overlaps: string[] }> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return { covered: subidCoversPool(text, 'root', 0), overlaps: poolOverlaps(text, 'root', 0) };
}

/**
 * What the container provider needs from the host; changes nothing. `brief` (every env up) decides the same
 * ok/not ok without starting a process: tools are looked up on the PATH instead of asked for their version,
 * and the checks that are only informative (bridge, copy-on-write) are not looked into.
 */
export async function checkHost(opts: { brief?: boolean } = {}): Promise<HostCheck[]> {
  const root = process.getuid?.() === 0;
  const brief = opts.brief ?? false;
  const [lxc, nft, newuidmap, subuid, subgid, cgroups, apparmor, helper, network] = await Promise.all([
    tool('lxc-start', brief),
    tool('nft', brief),
    brief ? (onPath('newuidmap', 'newgidmap') ? 'found' : undefined) : installed('sh', ['-c', 'command -v newuidmap && command -v newgidmap']),
    subidFile('/etc/subuid'),
    subidFile('/etc/subgid'),
    cgroupLayout(),
    apparmorEnabled(),
    brief ? true : idmountAvailable(),
    brief ? { ok: true, detail: 'not looked at (env doctor describes it)' } : describeNetwork(),
  ]);
  const overlaps = [...new Set([...subuid.overlaps, ...subgid.overlaps])];
  return [
    { name: 'root', ok: root, detail: root ? 'running as root' : `running as ${userInfo().username}`, fix: 'sudo env …  (LXC containers are created by root and run unprivileged)' },
    { name: 'lxc', ok: !!lxc, detail: lxc ? `LXC ${lxc}` : 'lxc-start not found', fix: 'apt-get install lxc' },
    { name: 'newuidmap', ok: !!newuidmap, detail: newuidmap ? 'newuidmap/newgidmap found' : 'newuidmap/newgidmap not found', fix: 'apt-get install uidmap' },
    {
      name: 'subuid',
      ok: subuid.covered && subgid.covered,
      detail: subuid.covered && subgid.covered
        ? `root owns ${POOL_BASE}-${POOL_LAST} in /etc/subuid and /etc/subgid`
        : `root needs ${POOL_BASE}-${POOL_LAST} in /etc/subuid and /etc/subgid (container id ranges)`,
      fix: SUBID_FIX,
    },
    {
      name: 'subuid-overlap',
      ok: overlaps.length === 0,
      detail: overlaps.length === 0 ? 'no other user shares the container id pool' : `other users' ranges overlap the pool: ${overlaps.join(', ')}`,
      fix: 'remove or move those lines in /etc/subuid and /etc/subgid',
    },
    {
      name: 'cgroups',
      ok: !!cgroups.freezer,
      detail: `${cgroups.detail}; freezer: ${cgroups.freezer ?? 'missing'}`,
      fix: 'mount cgroup2 on /sys/fs/cgroup (or the v1 freezer controller) so containers can be suspended',
    },
    { name: 'nft', ok: !!nft, detail: nft ?? 'nft not found', fix: 'apt-get install nftables' },
    { name: 'bridge', ...network },
    { name: 'apparmor', ok: true, detail: apparmor ? 'AppArmor on: containers get LXC\'s generated profile' : 'no AppArmor in the kernel: containers run unconfined' },
    {
      // Not fatal: without the helper (or on Linux < 5.19) each env gets a private copy of its image.
      name: 'copy-on-write',
      ok: true,
      detail: !helper
        ? 'no C compiler to build the idmount helper: each new env copies its image (apt-get install gcc libc6-dev)'
        : !overlayOnIdmapped()
          ? 'Linux < 5.19 has no overlayfs on idmapped layers: each new env copies its image'
          : 'new envs share their image copy-on-write (overlayfs on an idmapped image)',
    },
  ];
}

/**
 * Makes the host ready, idempotently: the id pool in /etc/subuid and /etc/subgid, the bridge
 * and nft table, and IPv4 forwarding only when this env wants outbound. One line per change.
 */
export async function prepareHost(spec: GuestSpec, progress: Progress): Promise<string[]> {
  if (process.getuid?.() !== 0) {
    // Idmapped mounts, the bridge and nft need root, and running as root makes every other fix too.
    throw new EnvboxError('HOST_NEEDS_ROOT', 'containers are created by root (they run unprivileged, each with its own id range)', {
      hint: 'run it as root: sudo env up',
    });
  }
  progress.update('preparing the host for containers');
  // One lock around it all: two `env up`s at once must not both append to /etc/subuid.
  const changes = await withHostLock(async () => {
    const done: string[] = [];
    for (const file of ['/etc/subuid', '/etc/subgid']) {
      if ((await subidFile(file)).covered) continue;
      const text = await readFile(file, 'utf8').catch(() => '');
      await appendFile(file, `${text && !text.endsWith('\n') ? '\n' : ''}${poolSubidLine()}\n`);
      done.push(`added ${poolSubidLine()} to ${file}`);
    }
    return [...done, ...(await ensureNetwork(spec.network.outbound)).changes];
  });
  progress.update('building the idmount helper');
  if (!(await idmountHelper())) progress.log('no C compiler: new envs copy their image (apt-get install gcc libc6-dev makes them instant)');
  return changes;
}
