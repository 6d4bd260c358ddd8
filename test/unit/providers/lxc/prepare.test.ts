import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prepareGuest, type GuestFs } from '../../../../src/providers/lxc/prepare.js';
import type { GuestSpec } from '../../../../src/providers/provider.js';

/**
 * prepareGuest on a small fake rootfs in a temp folder. Ownership is checked through the shift envbox uses
 * in overlay mode, which needs root to chown; as another user the ids map to the caller's own.
 */
const root = process.getuid?.() === 0;
const BASE = 0x48000000;

let dir = '';
let outside = '';
let fs: GuestFs;

const spec: GuestSpec = {
  id: 'web-00000000',
  hostname: 'web',
  stateDir: '/unused',
  rootfs: '/unused',
  user: { name: 'dev', uid: 1000, gid: 1000, home: '/home/dev', authorizedKey: 'ssh-ed25519 AAAAkey dev@host' },
  folders: [{ host: '/srv/web', guest: '/home/dev/code/web' }],
  network: { outbound: false },
};
const hostKey = { privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----', publicKey: 'ssh-ed25519 AAAAhost' };
const net = { address: '10.71.0.2', gateway: '10.71.0.1', nameservers: [] };

async function file(path: string, content: string, mode = 0o644) {
  await mkdir(join(dir, path, '..'), { recursive: true });
  await writeFile(join(dir, path), content, { mode });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-prepare-'));
  outside = await mkdtemp(join(tmpdir(), 'envbox-outside-'));
  const me = process.getuid?.() ?? 0;
  fs = { root: dir, onDisk: (id) => (root ? BASE + id : me) };
  await file('etc/passwd', 'root:x:0:0:root:/root:/bin/bash\n');
  await file('etc/group', 'root:x:0:\nshadow:x:42:\n');
  await file('etc/shadow', 'root:*:19000:0:99999:7:::\n', 0o640);
  await file('etc/skel/.bashrc', '# bashrc\n');
  await file('etc/ssh/ssh_host_rsa_key', 'old key', 0o600);
  await file('etc/network/interfaces', 'auto lo\niface lo inet loopback\nauto eth0\niface eth0 inet dhcp\n');
  await mkdir(join(dir, 'etc/systemd/network'), { recursive: true });
  await file('usr/bin/bash', '');
  await symlink('usr/bin', join(dir, 'bin'));
  // Absolute links, as images have them: they must resolve inside the rootfs, never on the host.
  await symlink('/run/systemd/resolve/stub-resolv.conf', join(dir, 'etc/resolv.conf'));
  await symlink(outside, join(dir, 'home'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

describe('prepareGuest', () => {
  it('starts sshd early and drops /run/nologin when the image runs sshd under systemd', async () => {
    await prepareGuest(fs, spec, net, hostKey);
    expect(existsSync(join(dir, 'etc/systemd/system/ssh.service.d/00-envbox.conf'))).toBe(false);
    await file('usr/lib/systemd/system/ssh.service', '[Unit]\n');
    await symlink('usr/lib', join(dir, 'lib'));
    await prepareGuest(fs, spec, net, hostKey);
    expect(await readFile(join(dir, 'etc/systemd/system/ssh.service.d/00-envbox.conf'), 'utf8')).toContain('DefaultDependencies=no');
    expect(await readFile(join(dir, 'etc/tmpfiles.d/systemd-nologin.conf'), 'utf8')).toMatch(/^#/);
  });

  it('masks the systemd generators that find nothing in a container, and only those the image has', async () => {
    await file('usr/lib/systemd/system-generators/systemd-cryptsetup-generator', '', 0o755);
    await file('usr/lib/systemd/system-generators/systemd-sysv-generator', '', 0o755);
    await symlink('usr/lib', join(dir, 'lib'));
    await prepareGuest(fs, spec, net, hostKey);
    const masks = join(dir, 'etc/systemd/system-generators');
    expect(await readdir(masks)).toEqual(['systemd-cryptsetup-generator']);
    expect(await readlink(join(masks, 'systemd-cryptsetup-generator'))).toBe('/dev/null');
    // Again (env up on an existing rootfs): the mask is replaced, not an error.
    await prepareGuest(fs, spec, net, hostKey);
    expect(await readlink(join(masks, 'systemd-cryptsetup-generator'))).toBe('/dev/null');
  });

  it('masks the units that can do nothing in an unprivileged container, and only those the image has', async () => {
    await file('usr/lib/systemd/system/modprobe@.service', '[Unit]\n');
    await file('usr/lib/systemd/system/systemd-sysctl.service', '[Unit]\n');
    await symlink('usr/lib', join(dir, 'lib'));
    await prepareGuest(fs, spec, net, hostKey);
    const units = join(dir, 'etc/systemd/system');
    expect(await readlink(join(units, 'modprobe@.service'))).toBe('/dev/null');
    expect(existsSync(join(units, 'systemd-modules-load.service'))).toBe(false);
    expect(existsSync(join(units, 'systemd-sysctl.service'))).toBe(false);
    await prepareGuest(fs, spec, net, hostKey);
    expect(await readlink(join(units, 'modprobe@.service'))).toBe('/dev/null');
  });

  it('writes names, network, user, sudo and sshd files', async () => {
    await prepareGuest(fs, spec, net, hostKey);
    const read = (p: string) => readFile(join(dir, p), 'utf8');
    expect(await read('etc/hostname')).toBe('web\n');
    expect(await read('etc/hosts')).toContain('10.71.0.2\tweb');
    expect(await read('etc/passwd')).toContain('dev:x:1000:1000:dev:/home/dev:/bin/bash');
    expect(await read('etc/group')).toContain('dev:x:1000:');
    expect(await read('etc/shadow')).toMatch(/^dev:\*:/m);
    expect(await read('etc/sudoers.d/envbox')).toContain('dev ALL=(ALL:ALL) NOPASSWD: ALL');
    expect(await read('etc/machine-id')).toMatch(/^[0-9a-f]{32}\n$/);
    expect(await read('etc/systemd/network/10-envbox-eth0.network')).toContain('Address=10.71.0.2/24');
    expect(await read('etc/network/interfaces')).not.toContain('inet dhcp');
    expect(await read('etc/ssh/ssh_host_ed25519_key')).toBe(`${hostKey.privateKey}\n`);
    expect(existsSync(join(dir, 'etc/ssh/ssh_host_rsa_key'))).toBe(false);
    expect(await read('etc/ssh/sshd_config.d/00-envbox.conf')).toContain('HostKey /etc/ssh/ssh_host_ed25519_key');
    // /home links to an absolute path: inside the rootfs that is <root><target>.
    const home = `${outside.slice(1)}/dev`;
    expect(await read(`${home}/.ssh/authorized_keys`)).toBe('ssh-ed25519 AAAAkey dev@host\n');
    expect(await read(`${home}/.bashrc`)).toBe('# bashrc\n');
  });

  it('replaces an absolute resolv.conf link instead of following it', async () => {
    await prepareGuest(fs, spec, net, hostKey);
    const resolv = await lstat(join(dir, 'etc/resolv.conf'));
    expect(resolv.isFile()).toBe(true);
    expect(existsSync(join(dir, 'run'))).toBe(false);
  });

  it('follows an absolute folder link inside the rootfs, never out to the host', async () => {
    await prepareGuest(fs, spec, net, hostKey);
    expect(await readlink(join(dir, 'home'))).toBe(outside);
    expect(existsSync(join(dir, outside, 'dev', '.ssh', 'authorized_keys'))).toBe(true);
    expect(existsSync(join(outside, 'dev'))).toBe(false);
  });

  it.skipIf(!root)('owns every file as the guest sees it, shifted to the env range', async () => {
    await prepareGuest(fs, spec, net, hostKey);
    const at = async (p: string) => {
      const st = await stat(join(dir, p));
      return [st.uid - BASE, st.gid - BASE, st.mode & 0o7777];
    };
    expect(await at('etc/ssh/ssh_host_ed25519_key')).toEqual([0, 0, 0o600]);
    expect(await at('etc/sudoers.d/envbox')).toEqual([0, 0, 0o440]);
    expect((await stat(join(dir, 'etc/shadow'))).mode & 0o7777).toBe(0o640);
    expect(await at(`${outside.slice(1)}/dev`)).toEqual([1000, 1000, 0o755]);
    expect(await at(`${outside.slice(1)}/dev/.ssh`)).toEqual([1000, 1000, 0o700]);
    expect(await at(`${outside.slice(1)}/dev/.ssh/authorized_keys`)).toEqual([1000, 1000, 0o600]);
    // Parents of a shared folder inside the home are the user's, so it can write next to the project.
    expect(await at(`${outside.slice(1)}/dev/code`)).toEqual([1000, 1000, 0o755]);
  });
});
