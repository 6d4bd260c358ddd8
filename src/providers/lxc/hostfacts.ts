import { existsSync } from 'node:fs';
import { readdir, readFile, readlink, rmdir } from 'node:fs/promises';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import type { GuestFacts, HostFacts } from './config.js';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** AppArmor is usable only when the kernel has it enabled; LXC's "generated" profile fails otherwise. */
export async function apparmorEnabled(): Promise<boolean> {
  const flag = await readFile('/sys/module/apparmor/parameters/enabled', 'utf8').catch(() => 'N');
  return flag.trim() === 'Y';
}

/** overlayfs accepts idmapped mounts as layers from Linux 5.19 on. */
export function overlayOnIdmapped(kernel = release()): boolean {
  const [major = 0, minor = 0] = kernel.split(/[.-]/).map(Number);
  return major > 5 || (major === 5 && minor >= 19);
}

export interface CgroupLayout {
  version: 1 | 2;
  /** Where the freezer LXC uses lives: cgroup2's cgroup.freeze, or the v1 freezer hierarchy. */
  freezer: 'v2' | 'v1' | undefined;
  detail: string;
}

/**
 * Pure cgroup2, or the legacy/hybrid layout some hosts without systemd as PID 1 still mount (v1 controllers
 * beside a controller-less /sys/fs/cgroup/unified). LXC handles both; limits use different keys.
 */
export async function cgroupLayout(): Promise<CgroupLayout> {
  if (existsSync(join(CGROUP_ROOT, 'cgroup.controllers'))) {
    const controllers = (await readFile(join(CGROUP_ROOT, 'cgroup.controllers'), 'utf8')).trim();
    return { version: 2, freezer: 'v2', detail: `cgroup2 (controllers: ${controllers || 'none'})` };
  }
  const hierarchies = await readdir(CGROUP_ROOT).catch(() => [] as string[]);
  const v1 = hierarchies.filter((h) => h !== 'unified' && existsSync(join(CGROUP_ROOT, h, 'cgroup.procs')));
  const freezer = v1.includes('freezer') ? 'v1' : undefined;
  const unified = hierarchies.includes('unified') ? ' + cgroup2 at unified/' : '';
  return { version: 1, freezer, detail: `cgroup v1 (${v1.join(', ') || 'none'})${unified}` };
}

let facts: Promise<HostFacts> | undefined;

/** Probed once per process: none of it changes without a reboot. */
export function hostFacts(): Promise<HostFacts> {
  facts ??= Promise.all([apparmorEnabled(), cgroupLayout()]).then(([apparmor, cgroups]) => ({
    apparmor,
    cgroup: cgroups.version,
    cpuCount: availableParallelism(),
  }));
  return facts;
}

/** Whether the rootfs boots systemd (its /sbin/init links to it). */
export async function guestFacts(rootfs: string): Promise<GuestFacts> {
  const init = await readlink(join(rootfs, 'sbin', 'init')).catch(() => '');
  return { systemd: init.includes('systemd') };
}

/**
 * LXC leaves lxc.monitor.<id>[-N] (and, after a crash, lxc.payload.<id>) cgroups behind, one per
 * hierarchy; destroy removes the empty ones so nothing of the env stays.
 */
export async function removeCgroups(id: string): Promise<void> {
  const roots = [CGROUP_ROOT, ...(await readdir(CGROUP_ROOT).catch(() => [] as string[])).map((h) => join(CGROUP_ROOT, h))];
  const ours = (name: string) =>
    [`lxc.monitor.${id}`, `lxc.payload.${id}`].some((p) => name === p || (name.startsWith(p) && /^-\d+$/.test(name.slice(p.length))));
  for (const root of roots) {
    const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) if (entry.isDirectory() && ours(entry.name)) await removeTree(join(root, entry.name));
  }
}

/** cgroup folders are removed with rmdir, innermost first; one that still has processes stays (EBUSY). */
async function removeTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) if (entry.isDirectory()) await removeTree(join(dir, entry.name));
  await rmdir(dir).catch(() => {});
}
