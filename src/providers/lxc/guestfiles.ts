import type { GuestUser } from '../provider.js';

/**
 * The text of every file envbox puts into a guest before its first boot, as pure functions of the spec
 * and what the image already has. prepare.ts writes them with the right ownership.
 */

export function hostsFile(hostname: string, address: string): string {
  // The hostname resolves to the guest's own bridge address: servers that look up their own name get an
  // answer at once (no DNS stall) and one the host can reach.
  return [
    '127.0.0.1\tlocalhost',
    `${address}\t${hostname}`,
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    '',
  ].join('\n');
}

/** Nameserver addresses in resolv.conf text, without loopback ones (the guest's loopback isn't the host's). */
export function upstreamNameservers(text: string): string[] {
  return text
    .split('\n')
    .map((line) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1])
    .filter((ns): ns is string => !!ns && !/^127\./.test(ns) && ns !== '::1' && ns !== '0.0.0.0');
}

/** With outbound off nothing is reachable, so lookups fail at once on the guest's own loopback instead of timing out. */
export function resolvConf(outbound: boolean, nameservers: string[]): string {
  if (!outbound) return '# envbox: this env has no outbound network (network.outbound: false)\nnameserver 127.0.0.1\n';
  if (nameservers.length === 0) return '# envbox: the host has no nameserver the guest can reach\nnameserver 127.0.0.1\n';
  return `# envbox: the host's nameservers\n${nameservers.map((ns) => `nameserver ${ns}`).join('\n')}\n`;
}

/** Drops any entry with our name (field 0) or, when `idField` is given, our id; appends ours. */
function withEntry(text: string, line: string, idField?: number): string {
  const ours = line.split(':');
  const kept = text.split('\n').filter((l) => {
    if (!l.trim()) return false;
    const f = l.split(':');
    return f[0] !== ours[0] && (idField === undefined || f[idField] !== ours[idField]);
  });
  return `${[...kept, line].join('\n')}\n`;
}

/** An image user holding our uid (e.g. a stock `debian` user) gives way: the uid must be ours in the guest. */
export function passwdWithUser(text: string, user: GuestUser, shell: string): string {
  return withEntry(text, `${user.name}:x:${user.uid}:${user.gid}:${user.name}:${user.home}:${shell}`, 2);
}

/** A group that already has our gid (e.g. `users`) stays and becomes the user's primary group. */
export function groupWithUser(text: string, user: GuestUser): string {
  const lines = text.split('\n').filter((l) => l.trim() && l.split(':')[0] !== user.name);
  if (!lines.some((l) => l.split(':')[2] === String(user.gid))) lines.push(`${user.name}:x:${user.gid}:`);
  return `${lines.join('\n')}\n`;
}

/** `*` (no password, not locked): sshd accepts keys for it, with or without PAM. */
export function shadowWithUser(text: string, user: GuestUser, now = Date.now()): string {
  return withEntry(text, `${user.name}:*:${Math.floor(now / 86_400_000)}:0:99999:7:::`);
}

/** `groupText` is the group file as written: the user's group has a gshadow entry only if it exists. */
export function gshadowWithUser(text: string, user: GuestUser, groupText: string): string {
  const hasGroup = groupText.split('\n').some((l) => l.split(':')[0] === user.name);
  const lines = text.split('\n').filter((l) => l.trim() && l.split(':')[0] !== user.name);
  if (hasGroup) lines.push(`${user.name}:!::`);
  return `${lines.join('\n')}\n`;
}

export function sudoersFor(user: GuestUser): string {
  return `# envbox: the env's user runs anything as root without a password\n${user.name} ALL=(ALL:ALL) NOPASSWD: ALL\n`;
}

/** Drop-ins are read before the rest of sshd_config and sshd keeps the first value it sees, so ours win. */
export const SSHD_DROPIN_PATH = '/etc/ssh/sshd_config.d/00-envbox.conf';

export function sshdDropIn(): string {
  return [
    '# envbox: only the host key envbox pinned, key logins only, and no lookups that slow down each login',
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin no',
    'UseDNS no',
    'GSSAPIAuthentication no',
    'PrintMotd no',
    'PrintLastLog no',
    '',
  ].join('\n');
}

/** A drop-in that starts sshd as soon as systemd can, rather than after all of early boot (sysinit.target). */
export const SSHD_UNIT_DROPIN_PATH = '/etc/systemd/system/ssh.service.d/00-envbox.conf';

/** `$$` is systemd's escape for a literal `$`. */
const SHUTDOWN_ENDS_SESSIONS = `'[ "$$(systemctl is-system-running)" != stopping ] || exec pkill -TERM -x sshd'`;

export function sshdUnitDropIn(): string {
  return [
    '# envbox: sshd needs nothing from early boot (its /run/sshd is its RuntimeDirectory), so it starts',
    '# with the first units instead of after sysinit.target; its config was checked when envbox wrote it.',
    '[Unit]',
    'DefaultDependencies=no',
    'Conflicts=shutdown.target',
    'Before=shutdown.target',
    '',
    '[Service]',
    'ExecStartPre=',
    '# At shutdown the sessions go with sshd: a connection kept open (env ssh shares one) must not start',
    '# commands in a guest that is going down, where they would die moments later. A plain restart keeps them.',
    `ExecStopPost=-/bin/sh -c ${SHUTDOWN_ENDS_SESSIONS}`,
    '',
  ].join('\n');
}

/**
 * An /etc/tmpfiles.d entry of the same name overrides systemd's systemd-nologin.conf, which writes
 * /run/nologin early in boot ("System is booting up") and keeps non-root logins out until the end of it:
 * with sshd up early, the env's first login would be refused for no reason.
 */
export const NOLOGIN_TMPFILES_PATH = '/etc/tmpfiles.d/systemd-nologin.conf';
export const NOLOGIN_TMPFILES = '# envbox: no /run/nologin while the guest boots; the env user may log in as soon as sshd runs\n';

/**
 * Overrides the image's tmp.conf ("D /tmp": emptied by systemd-tmpfiles during boot). With sshd up
 * early, that would remove what the first commands write to /tmp; envbox empties /tmp before the
 * guest starts instead (emptyGuestTmp), so the boot only makes sure it is there.
 */
export const TMP_TMPFILES_PATH = '/etc/tmpfiles.d/tmp.conf';
export const TMP_TMPFILES = '# envbox: /tmp is emptied before the guest starts, not while it boots (sshd answers early)\nd /tmp 1777 root root -\n';

/**
 * systemd generators that have nothing to find in a container (encrypted, verity and integrity block
 * devices, GPT auto-mounts, hibernation, offline updates, kernel command-line switches: the command line
 * is the host's), masked in /etc/systemd/system-generators. systemd runs every generator before it starts
 * the first unit, and on a busy host these execs alone hold the guest's boot up by a good part of a second.
 * fstab, getty, sysv and rc-local stay: guests use them.
 */
export const CONTAINER_IDLE_GENERATORS = [
  'systemd-cryptsetup-generator',
  'systemd-veritysetup-generator',
  'systemd-integritysetup-generator',
  'systemd-gpt-auto-generator',
  'systemd-hibernate-resume-generator',
  'systemd-system-update-generator',
  'systemd-debug-generator',
  'systemd-run-generator',
];

/**
 * Units that can do nothing in an unprivileged container, masked in /etc/systemd/system: loading kernel
 * modules is the host's business (modprobe@.service runs once per module systemd wants, each a process, while
 * the guest boots and the first login is going on).
 */
export const CONTAINER_IDLE_UNITS = ['modprobe@.service', 'systemd-modules-load.service'];

/** systemd-networkd, if the image runs it, keeps the address LXC gave eth0 instead of asking DHCP. */
export function networkdUnit(address: string, gateway: string): string {
  return [
    '# envbox: eth0 is configured by LXC before boot; keep it as it is',
    '[Match]',
    'Name=eth0',
    '',
    '[Network]',
    `Address=${address}/24`,
    `Gateway=${gateway}`,
    'DHCP=no',
    'IPv6AcceptRA=no',
    'KeepConfiguration=yes',
    '',
  ].join('\n');
}

/**
 * ifupdown's interfaces file without any eth0 stanza: `iface eth0 inet dhcp` would make networking.service
 * (and sshd, ordered after it) wait for a DHCP server that isn't there.
 */
export function interfacesWithoutEth0(text: string): string {
  const out: string[] = [];
  let skipping = false;
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    const keyword = words[0] ?? '';
    if (/^(iface|mapping|auto|allow-[\w-]+|source|source-directory)$/.test(keyword)) {
      skipping = keyword === 'iface' && words[1] === 'eth0';
      if (keyword === 'auto' || keyword.startsWith('allow-')) {
        const rest = words.slice(1).filter((w) => w !== 'eth0');
        if (rest.length === 0) continue;
        out.push(`${keyword} ${rest.join(' ')}`);
        continue;
      }
    }
    if (!skipping) out.push(line);
  }
  return `${out.join('\n').trimEnd()}\n# envbox: eth0 is configured by LXC before boot\niface eth0 inet manual\n`;
}
