import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { customizeRootfs } from '../../../src/images/customize.js';
import { mmdebstrapArgs } from '../../../src/images/mmdebstrap.js';
import { REQUIRED_PACKAGES } from '../../../src/images/recipe.js';

describe('customizeRootfs', () => {
  let dir: string;
  let root: string;
  const put = async (rel: string, text = 'x\n') => {
    await mkdir(join(root, rel, '..'), { recursive: true });
    await writeFile(join(root, rel), text);
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envbox-rootfs-'));
    root = join(dir, 'rootfs');
    await mkdir(join(root, 'etc/systemd/system/timers.target.wants'), { recursive: true });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prepares an image the way every env expects it', async () => {
    await put('etc/ssh/ssh_host_ed25519_key');
    await put('etc/ssh/ssh_host_ed25519_key.pub');
    await put('etc/ssh/sshd_config');
    await put('etc/machine-id', '0123456789abcdef0123456789abcdef\n');
    await put('var/lib/dbus/machine-id', '0123456789abcdef0123456789abcdef\n');
    await put('etc/hostname', 'buildhost\n');
    await put('etc/resolv.conf', 'nameserver 192.0.2.1\n');

    const done = await customizeRootfs(root);

    expect(await readdir(join(root, 'etc/ssh'))).toEqual(['sshd_config']);
    expect(await readFile(join(root, 'etc/machine-id'), 'utf8')).toBe('');
    for (const gone of ['var/lib/dbus/machine-id', 'etc/hostname', 'etc/resolv.conf']) {
      await expect(lstat(join(root, gone))).rejects.toThrow();
    }
    expect(await readFile(join(root, 'etc/hosts'), 'utf8')).toMatch(/^127\.0\.0\.1\tlocalhost\n/);
    for (const unit of ['sys-kernel-debug.mount', 'apt-daily.timer', 'apt-daily-upgrade.timer']) {
      expect(await readlink(join(root, 'etc/systemd/system', unit))).toBe('/dev/null');
    }
    expect(done).toContain('removed 2 ssh host key files');
    // Running it again changes nothing that matters.
    await customizeRootfs(root);
    expect(await readlink(join(root, 'etc/systemd/system/sys-kernel-debug.mount'))).toBe('/dev/null');
  });

  it('leaves a resolv.conf symlink and an existing hosts file alone', async () => {
    await symlink('../run/systemd/resolve/stub-resolv.conf', join(root, 'etc/resolv.conf'));
    await put('etc/hosts', '127.0.0.1 localhost mine\n');
    await customizeRootfs(root);
    expect(await readlink(join(root, 'etc/resolv.conf'))).toBe('../run/systemd/resolve/stub-resolv.conf');
    expect(await readFile(join(root, 'etc/hosts'), 'utf8')).toBe('127.0.0.1 localhost mine\n');
  });

  it('never follows a symlinked folder out of the rootfs', async () => {
    const outside = join(dir, 'outside');
    await mkdir(join(outside, 'system'), { recursive: true });
    await writeFile(join(outside, 'ssh_host_rsa_key'), 'host key\n');
    await rm(join(root, 'etc/systemd'), { recursive: true });
    await symlink(outside, join(root, 'etc/ssh'));
    await symlink(outside, join(root, 'etc/systemd'));
    await customizeRootfs(root);
    expect((await readdir(outside)).sort()).toEqual(['ssh_host_rsa_key', 'system']);
    expect(await readdir(join(outside, 'system'))).toEqual([]);
  });
});

describe('mmdebstrapArgs', () => {
  const recipe = { suite: 'bookworm', components: ['main', 'contrib'], variant: 'apt' as const, packages: [...REQUIRED_PACKAGES, 'git'], mirror: null };

  it('builds a directory as root with the recipe and verbose output for progress', () => {
    const args = mmdebstrapArgs(recipe, '/c/.tmp/rootfs', { eatmydata: false });
    expect(args).toEqual(expect.arrayContaining(['--mode=root', '--format=directory', '--verbose', '--variant=apt', '--components=main,contrib']));
    expect(args).toContain(`--include=${recipe.packages.join(',')}`);
    expect(args.slice(-2)).toEqual(['bookworm', '/c/.tmp/rootfs']);
    expect(args.some((a) => a.startsWith('--hook-dir'))).toBe(false);
    // Misspelt packages fail right after the download, not after installing the essential set.
    expect(args.find((a) => a.startsWith('--extract-hook='))).toMatch(/--simulate .* install ca-certificates .* git >\/dev\/null$/);
  });

  it('adds the eatmydata hooks when usable and the mirror last', () => {
    const args = mmdebstrapArgs({ ...recipe, mirror: 'http://mirror.example/debian' }, '/r', { eatmydata: true });
    expect(args).toContain('--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata');
    expect(args.slice(-3)).toEqual(['bookworm', '/r', 'http://mirror.example/debian']);
  });
});
