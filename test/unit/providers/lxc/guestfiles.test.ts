import { describe, expect, it } from 'vitest';
import {
  groupWithUser,
  gshadowWithUser,
  hostsFile,
  interfacesWithoutEth0,
  passwdWithUser,
  resolvConf,
  shadowWithUser,
  NOLOGIN_TMPFILES,
  TMP_TMPFILES,
  TMP_TMPFILES_PATH,
  sshdDropIn,
  sshdUnitDropIn,
  sudoersFor,
  upstreamNameservers,
} from '../../../../src/providers/lxc/guestfiles.js';
import type { GuestUser } from '../../../../src/providers/provider.js';

const dev: GuestUser = { name: 'dev', uid: 1000, gid: 1000, home: '/home/dev', authorizedKey: 'ssh-ed25519 AAAA' };

describe('names and resolution', () => {
  it('the hostname and localhost resolve from /etc/hosts', () => {
    const lines = hostsFile('webapp', '10.71.0.2').split('\n');
    expect(lines).toContain('127.0.0.1\tlocalhost');
    expect(lines).toContain('10.71.0.2\twebapp');
  });

  it.each([
    ['nameserver 10.255.255.53\n', ['10.255.255.53']],
    ['nameserver 127.0.0.53\noptions edns0\n', []],
    ['# c\nnameserver 1.1.1.1\nnameserver ::1\nnameserver 2606:4700::1111\nsearch lan\n', ['1.1.1.1', '2606:4700::1111']],
  ])('upstream nameservers of %j', (text, expected) => {
    expect(upstreamNameservers(text)).toEqual(expected);
  });

  it.each([
    [false, ['1.1.1.1'], 'nameserver 127.0.0.1'],
    [true, [], 'nameserver 127.0.0.1'],
    [true, ['1.1.1.1', '9.9.9.9'], 'nameserver 1.1.1.1\nnameserver 9.9.9.9'],
  ])('resolv.conf with outbound %s and %j has %j', (outbound, ns, expected) => {
    expect(resolvConf(outbound, ns)).toContain(expected);
  });
});

describe('the guest user', () => {
  const passwd = 'root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000::/home/debian:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n';

  it('takes over its uid from a stock image user', () => {
    expect(passwdWithUser(passwd, dev, '/bin/bash')).toBe(
      'root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\ndev:x:1000:1000:dev:/home/dev:/bin/bash\n',
    );
  });

  it('is written once however often create runs', () => {
    const once = passwdWithUser(passwd, dev, '/bin/bash');
    expect(passwdWithUser(once, dev, '/bin/bash')).toBe(once);
  });

  it('gets its own group, or joins one that already has its gid', () => {
    expect(groupWithUser('root:x:0:\nsudo:x:27:\n', dev)).toBe('root:x:0:\nsudo:x:27:\ndev:x:1000:\n');
    expect(groupWithUser('root:x:0:\nusers:x:1000:\n', dev)).toBe('root:x:0:\nusers:x:1000:\n');
    expect(groupWithUser('root:x:0:\ndev:x:1001:\n', dev)).toBe('root:x:0:\ndev:x:1000:\n');
  });

  it('gshadow follows the group file', () => {
    expect(gshadowWithUser('root:*::\n', dev, 'dev:x:1000:\n')).toBe('root:*::\ndev:!::\n');
    expect(gshadowWithUser('root:*::\ndev:!::\n', dev, 'users:x:1000:\n')).toBe('root:*::\n');
  });

  it('has no password but is not locked (sshd accepts its key with UsePAM no too)', () => {
    const line = shadowWithUser('root:*:19000:0:99999:7:::\n', dev, 19_500 * 86_400_000).split('\n')[1];
    expect(line).toBe('dev:*:19500:0:99999:7:::');
  });

  it('runs sudo without a password', () => {
    expect(sudoersFor(dev)).toContain('dev ALL=(ALL:ALL) NOPASSWD: ALL');
  });
});

describe('sshd', () => {
  it('uses only the pinned key and skips DNS and GSSAPI at login', () => {
    const lines = sshdDropIn().split('\n');
    expect(lines).toContain('HostKey /etc/ssh/ssh_host_ed25519_key');
    expect(lines.filter((l) => l.startsWith('HostKey'))).toHaveLength(1);
    expect(lines).toContain('UseDNS no');
    expect(lines).toContain('GSSAPIAuthentication no');
    expect(lines).toContain('PasswordAuthentication no');
  });
});

describe('sshd starts early in boot', () => {
  it('leaves out the default dependencies and the config re-check, keeping the shutdown ordering', () => {
    const lines = sshdUnitDropIn().split('\n');
    expect(lines.indexOf('[Unit]')).toBeLessThan(lines.indexOf('DefaultDependencies=no'));
    expect(lines).toContain('Conflicts=shutdown.target');
    expect(lines).toContain('Before=shutdown.target');
    expect(lines.indexOf('[Service]')).toBeLessThan(lines.indexOf('ExecStartPre='));
    // Only a system that is stopping loses its sessions with sshd ($$ is systemd's literal $).
    expect(lines).toContain(`ExecStopPost=-/bin/sh -c '[ "$$(systemctl is-system-running)" != stopping ] || exec pkill -TERM -x sshd'`);
  });

  it('overrides the /run/nologin rule with one that holds no entry', () => {
    const entries = NOLOGIN_TMPFILES.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    expect(entries).toEqual([]);
  });

  it("overrides the image's tmp.conf: /tmp is made at boot, never emptied during it", () => {
    expect(TMP_TMPFILES_PATH).toBe('/etc/tmpfiles.d/tmp.conf');
    const entries = TMP_TMPFILES.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    expect(entries).toEqual(['d /tmp 1777 root root -']);
  });
});

describe('interfacesWithoutEth0', () => {
  it.each([
    [
      'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n  hostname x\n',
      'auto lo\niface lo inet loopback\n\n',
    ],
    ['auto lo eth0\niface lo inet loopback\nallow-hotplug eth0\niface eth0 inet6 auto\n', 'auto lo\niface lo inet loopback\n'],
    ['source /etc/network/interfaces.d/*\n', 'source /etc/network/interfaces.d/*\n'],
  ])('%j', (input, kept) => {
    const out = interfacesWithoutEth0(input);
    expect(out.startsWith(kept.trimEnd())).toBe(true);
    expect(out).not.toMatch(/eth0 inet (dhcp|6)/);
    expect(out).toContain('iface eth0 inet manual');
  });
});
