import { userInfo } from 'node:os';
import { EnvboxError } from '../../util/errors.js';
import { run } from '../../util/exec.js';
import type { Progress } from '../../util/progress.js';
import { idmountAvailable } from '../lxc/idmount.js';
import type { GuestSpec, HostCheck } from '../provider.js';
import { describeAccel } from './accel.js';

async function firstLine(cmd: string, args: string[]): Promise<string | undefined> {
  const result = await run(cmd, args).catch(() => undefined);
  return result?.code === 0 ? (result.stdout || result.stderr).trim().split('\n')[0] : undefined;
}

/** What VMs need from the host; changes nothing (the KVM probe is only read from its cache). */
export async function checkHost(): Promise<HostCheck[]> {
  const root = process.getuid?.() === 0;
  const [qemu, qemuImg, mkfs, mmdebstrap, accel, idmount] = await Promise.all([
    firstLine('qemu-system-x86_64', ['--version']),
    firstLine('qemu-img', ['--version']),
    firstLine('mkfs.ext4', ['-V']),
    firstLine('mmdebstrap', ['--version']),
    describeAccel(),
    idmountAvailable(),
  ]);
  return [
    {
      name: 'root',
      ok: root,
      detail: root ? 'running as root' : `running as ${userInfo().username}`,
      fix: 'sudo env …  (VM images are built with mmdebstrap --mode=root and folders are shared through idmapped mounts)',
    },
    { name: 'qemu', ok: !!qemu, detail: qemu ?? 'qemu-system-x86_64 not found', fix: 'apt-get install qemu-system-x86' },
    { name: 'qemu-img', ok: !!qemuImg, detail: qemuImg ?? 'qemu-img not found', fix: 'apt-get install qemu-utils' },
    { name: 'mkfs.ext4', ok: !!mkfs, detail: mkfs ?? 'mkfs.ext4 not found', fix: 'apt-get install e2fsprogs' },
    { name: 'mmdebstrap', ok: !!mmdebstrap, detail: mmdebstrap ?? 'mmdebstrap not found', fix: 'apt-get install mmdebstrap' },
    // Not fatal: TCG always works, only slower.
    { name: 'accel', ok: true, detail: accel },
    {
      name: 'folder-idmap',
      ok: true,
      detail: idmount
        ? 'shared folders are idmapped views (guest user = project owner; guest root lands as nobody)'
        : 'no C compiler: folders are shared as they are, and only when the guest user has the owner\'s ids (apt-get install gcc libc6-dev)',
    },
  ];
}

/** Nothing host-wide to set up for user-mode networking; only root is required. */
export async function prepareHost(_spec: GuestSpec, _progress: Progress): Promise<string[]> {
  if (process.getuid?.() !== 0) {
    throw new EnvboxError('HOST_NEEDS_ROOT', 'VM envs are created by root (images are built with mmdebstrap --mode=root)', { hint: 'run: sudo env up' });
  }
  return [];
}
