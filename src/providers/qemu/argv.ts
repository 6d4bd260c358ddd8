import { EnvboxError } from '../../util/errors.js';
import { SEED_TAG } from '../../images/vm-guest.js';

/**
 * QEMU's command line for an env, as a pure function of what to boot, so it is table-tested.
 *
 * Machine: q35 with virtio-pci devices and direct kernel boot. microvm boots about as fast under TCG but
 * has neither HPET nor an ACPI PM timer, and on a loaded 2-core host the kernel's TSC calibration against
 * the PIT fails there and the boot hangs; q35 always has a reference clock. `-nodefaults` leaves out the
 * VGA card, NIC and drives QEMU would add.
 */

export interface VmLaunch {
  id: string;
  accel: 'kvm' | 'tcg';
  cpus: number;
  memoryBytes: number;
  kernel: string;
  initrd: string;
  disk: string;
  sshPort: number;
  outbound: boolean;
  /** The seed share's folder (read-only in the guest). */
  seed: string;
  /** Shared folders in Envfile order; folder N gets mount tag envboxN. */
  folders: string[];
  qmp: string;
  pidFile: string;
  consoleLog: string;
}

export const folderTag = (index: number): string => `envbox${index}`;

/** A value inside a QEMU `key=value,...` option: commas are doubled; newlines could never be meant. */
export function optValue(value: string): string {
  if (/[\n\r\0]/.test(value)) {
    throw new EnvboxError('QEMU_ARG', `${JSON.stringify(value)} contains a line break or NUL`, { hint: 'rename the path without control characters' });
  }
  return value.replaceAll(',', ',,');
}

/**
 * The kernel command line. `rw`: the initramfs applies the seed to the root filesystem before init.
 * `net.ifnames=0`: the NIC is eth0, which the seeded networkd unit names. `panic=-1`: a panic reboots at
 * once, and start() sees it in the console log instead of waiting out its timeout. Under TCG there is
 * no speculative execution to defend against, so the mitigations are pure cost there.
 */
export function kernelCmdline(accel: 'kvm' | 'tcg'): string {
  const args = ['console=ttyS0', 'root=/dev/vda', 'rootfstype=ext4', 'rw', 'net.ifnames=0', 'quiet', 'panic=-1', '8250.nr_uarts=1'];
  if (accel === 'tcg') args.push('mitigations=off');
  return args.join(' ');
}

export function qemuArgs(vm: VmLaunch): string[] {
  if (!Number.isInteger(vm.cpus) || vm.cpus < 1) throw new EnvboxError('QEMU_ARG', `cpus ${vm.cpus} is not a CPU count`, { hint: 'set cpus: 2' });
  const mib = Math.floor(vm.memoryBytes / 2 ** 20);
  if (!Number.isSafeInteger(mib) || mib < 128) {
    throw new EnvboxError('QEMU_ARG', `memory ${vm.memoryBytes} bytes is too little for a VM`, { hint: 'set memory: 1GiB or more' });
  }
  if (!Number.isInteger(vm.sshPort) || vm.sshPort < 1 || vm.sshPort > 65535) throw new Error(`qemuArgs: bad ssh port ${vm.sshPort}`);
  // restrict=on cuts the guest off from everything but the forwards QEMU itself makes (sshd here).
  const net = ['user', 'id=net0', `hostfwd=tcp:127.0.0.1:${vm.sshPort}-:22`, ...(vm.outbound ? [] : ['restrict=on'])];
  const args = [
    '-name', `${optValue(vm.id)},debug-threads=off`,
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-machine', 'q35',
    ...(vm.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,thread=multi', '-cpu', 'max']),
    '-smp', String(vm.cpus),
    '-m', `${mib}M`,
    '-kernel', vm.kernel,
    '-initrd', vm.initrd,
    '-append', kernelCmdline(vm.accel),
    '-drive', `if=none,id=disk0,file=${optValue(vm.disk)},format=qcow2,cache=writeback,discard=unmap`,
    '-device', 'virtio-blk-pci,drive=disk0',
    '-netdev', net.join(','),
    '-device', 'virtio-net-pci,netdev=net0',
    // The guest's sshd and TLS want entropy at once; without a source, crng init took ~20 s under TCG.
    '-object', 'rng-random,id=rng0,filename=/dev/urandom',
    '-device', 'virtio-rng-pci,rng=rng0',
    '-fsdev', `local,id=seed,path=${optValue(vm.seed)},security_model=passthrough,readonly=on`,
    '-device', `virtio-9p-pci,fsdev=seed,mount_tag=${SEED_TAG}`,
  ];
  vm.folders.forEach((path, i) => {
    // passthrough: the guest sees and sets real ownership; seed.ts points it at an idmapped view of the
    // folder when the guest user's ids differ from the host owner's. multidevs=remap keeps inode numbers
    // unique when the folder spans several host filesystems.
    args.push('-fsdev', `local,id=fs${i},path=${optValue(path)},security_model=passthrough,multidevs=remap`);
    args.push('-device', `virtio-9p-pci,fsdev=fs${i},mount_tag=${folderTag(i)}`);
  });
  args.push(
    '-chardev', `file,id=console,path=${optValue(vm.consoleLog)},append=on`,
    '-serial', 'chardev:console',
    '-qmp', `unix:${optValue(vm.qmp)},server=on,wait=off`,
    '-pidfile', vm.pidFile,
    '-daemonize',
  );
  return args;
}
