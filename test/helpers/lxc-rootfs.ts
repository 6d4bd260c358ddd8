import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../src/util/exec.js';
import { cacheHome, imagesDir } from '../../src/util/paths.js';

/**
 * A Debian bookworm root filesystem for container tests: the images module's cached `debian/bookworm` when
 * it has built one, else one built once with mmdebstrap into the test cache (20-90 s, then reused). It is
 * prepared like an image build: no sshd host keys, sys-kernel-debug.mount masked.
 */
export async function testRootfs(): Promise<string> {
  for (const key of await readdir(imagesDir()).catch(() => [] as string[])) {
    const meta = await readFile(join(imagesDir(), key, 'image.json'), 'utf8').catch(() => '');
    const rootfs = join(imagesDir(), key, 'rootfs');
    if (meta && (JSON.parse(meta) as { name?: string }).name === 'debian/bookworm' && existsSync(join(rootfs, 'sbin', 'init'))) {
      return rootfs;
    }
  }
  const dir = join(cacheHome(), 'test-rootfs', 'bookworm');
  const rootfs = join(dir, 'rootfs');
  if (existsSync(join(rootfs, 'sbin', 'init'))) return rootfs;
  const partial = join(dir, 'rootfs.partial');
  await mkdir(dir, { recursive: true });
  await rm(partial, { recursive: true, force: true });
  const packages = 'openssh-server,sudo,systemd-sysv,iproute2,inotify-tools,ca-certificates';
  const result = await run('mmdebstrap', ['--mode=root', '--format=directory', '--variant=apt', `--include=${packages}`, 'bookworm', partial]);
  if (result.code !== 0) throw new Error(`mmdebstrap failed:\n${result.stderr.slice(-2000)}`);
  const sshDir = join(partial, 'etc', 'ssh');
  for (const name of await readdir(sshDir)) if (name.startsWith('ssh_host_')) await rm(join(sshDir, name));
  const mask = join(partial, 'etc', 'systemd', 'system', 'sys-kernel-debug.mount');
  await rm(mask, { force: true });
  await symlink('/dev/null', mask);
  await rename(partial, rootfs);
  return rootfs;
}
