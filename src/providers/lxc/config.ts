import { posix } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import type { GuestSpec } from '../provider.js';
import { containerIdmap } from './idmap.js';
import { folderMountPath, type EnvPaths, type LxcMachine } from './layout.js';
import { formatIPv4, macFor, parseIPv4 } from './net.js';

/** Facts about the host the config depends on (probed once by hostfacts.ts; fixed in tests). */
export interface HostFacts {
  apparmor: boolean;
  /** 2: /sys/fs/cgroup is pure cgroup2; 1: legacy or hybrid, where LXC puts limits in the v1 controllers. */
  cgroup: 1 | 2;
  cpuCount: number;
}

/** The rootfs's /sbin/init is systemd, which halts on SIGRTMIN+3 (LXC's default SIGPWR only starts sigpwr.target). */
export interface GuestFacts {
  systemd: boolean;
}

/** LXC reads one `key = value` per line: a newline or NUL in a value would smuggle in more keys. */
function value(what: string, text: string): string {
  if (/[\n\r\0]/.test(text)) {
    throw new EnvboxError('LXC_CONFIG_VALUE', `${what} contains a line break or NUL: ${JSON.stringify(text)}`, {
      hint: `remove control characters from ${what}`,
    });
  }
  return text;
}

/** fstab escaping, as LXC parses lxc.mount.entry with getmntent: space, tab and backslash as octal (\040). */
export function fstabEscape(path: string): string {
  return value('mount path', path).replace(/[ \t\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

/** CPUs spread by slot (env 0 gets 0..n-1, env 1 the next n, …) so envs don't all pile onto CPU 0. */
export function cpusetFor(slot: number, cpus: number | undefined, cpuCount: number): string | undefined {
  if (!cpus || cpus >= cpuCount) return undefined;
  const picked = Array.from({ length: cpus }, (_, i) => (slot * cpus + i) % cpuCount).sort((a, b) => a - b);
  return picked.join(',');
}

/**
 * Turns on quick ACKs for the guest's route to the bridge, in its network namespace, before init starts
 * (start-host runs on every start, a reboot from inside the guest too). OpenSSH sends a login's small
 * messages back to back with Nagle on, so each of them waits for the ACK of the one before; the guest's
 * kernel delays that ACK by 40 ms. With quick ACKs a fresh login no longer stalls (bridge.ts does the same
 * on the host's side). A failure here costs only the speed, never the start.
 */
export function quickAckHook(address: string): string {
  const value = parseIPv4(address);
  if (value === undefined) throw new EnvboxError('LXC_CONFIG_VALUE', `address ${JSON.stringify(address)} is not an IPv4 address`, { hint: 'env destroy && env up gives the env a new one' });
  const subnet = `${formatIPv4(value - (value % 256))}/24`;
  const route = `ip route replace ${subnet} dev eth0 proto kernel scope link src ${address} quickack 1`;
  // LXC runs the hook with /bin/sh -c and appends the container's name and the hook's: they become $0 and $@.
  return `/bin/sh -c 'nsenter --net="/proc/$LXC_PID/ns/net" ${route} || :'`;
}

/**
 * The container's LXC config: a pure function of the spec, what `create` recorded and the host facts, so
 * `start` can rewrite it every time (it lives under /run) and tests can pin it.
 */
export function lxcConfig(spec: GuestSpec, machine: LxcMachine, paths: EnvPaths, host: HostFacts, guest: GuestFacts): string {
  const lines: string[] = [
    `# Written by envbox for env ${value('env id', spec.id)} on every start; change the Envfile, not this file.`,
    'lxc.include = /usr/share/lxc/config/common.conf',
    'lxc.include = /usr/share/lxc/config/userns.conf',
    'lxc.arch = linux64',
    `lxc.uts.name = ${value('hostname', spec.hostname)}`,
    `lxc.rootfs.path = dir:${value('rootfs path', paths.rootfs)}`,
  ];
  // In copy mode the rootfs holds the image's own ids and LXC idmaps it; the overlay is already shifted.
  if (machine.rootfsMode === 'copy') lines.push('lxc.rootfs.options = idmap=container');
  lines.push(...containerIdmap(machine.idmapBase).map((line) => `lxc.idmap = ${line}`));
  // Without AppArmor in the kernel, "generated" makes lxc-start fail; with it, keep LXC's default profile.
  lines.push(host.apparmor ? 'lxc.apparmor.profile = generated' : 'lxc.apparmor.profile = unconfined');
  if (guest.systemd) lines.push('lxc.signal.halt = SIGRTMIN+3');
  lines.push(
    `lxc.log.file = ${value('log path', paths.log)}`,
    'lxc.log.level = WARN',
    `lxc.console.logfile = ${value('console log path', paths.consoleLog)}`,
    'lxc.start.auto = 0',
    'lxc.net.0.type = veth',
    `lxc.net.0.link = ${value('bridge', machine.bridge)}`,
    `lxc.net.0.veth.pair = ${value('veth name', machine.veth)}`,
    'lxc.net.0.name = eth0',
    `lxc.net.0.hwaddr = ${macFor(spec.id)}`,
    'lxc.net.0.flags = up',
    `lxc.net.0.ipv4.address = ${value('address', machine.address)}/24`,
    `lxc.net.0.ipv4.gateway = ${value('gateway', machine.gateway)}`,
    `lxc.hook.start-host = ${quickAckHook(machine.address)}`,
  );
  spec.folders.forEach((folder, index) => {
    const target = posix.normalize(value('guest folder', folder.guest));
    if (!posix.isAbsolute(target) || target === '/') {
      throw new EnvboxError('GUEST_FOLDER', `guest folder ${JSON.stringify(folder.guest)} must be an absolute path below /`, {
        hint: 'use a path like /home/dev/project',
      });
    }
    // Folders are mounted under /run/envbox first: already idmapped (folderMountMap) in overlay mode,
    // plain in copy mode, where LXC idmaps them with the container's own map.
    const options = machine.rootfsMode === 'overlay' ? 'bind,create=dir' : 'bind,create=dir,idmap=container';
    lines.push(`lxc.mount.entry = ${fstabEscape(folderMountPath(paths, index))} ${fstabEscape(target.slice(1))} none ${options} 0 0`);
  });
  const prefix = host.cgroup === 2 ? 'lxc.cgroup2' : 'lxc.cgroup';
  const cpuset = cpusetFor(machine.idmapSlot, spec.cpus, host.cpuCount);
  if (cpuset) lines.push(`${prefix}.cpuset.cpus = ${cpuset}`);
  if (spec.memoryBytes) {
    if (!Number.isSafeInteger(spec.memoryBytes) || spec.memoryBytes <= 0) {
      throw new EnvboxError('LXC_CONFIG_VALUE', `memory ${spec.memoryBytes} is not a byte count`, { hint: 'set memory like 2GiB' });
    }
    lines.push(host.cgroup === 2 ? `${prefix}.memory.max = ${spec.memoryBytes}` : `${prefix}.memory.limit_in_bytes = ${spec.memoryBytes}`);
  }
  return `${lines.join('\n')}\n`;
}
