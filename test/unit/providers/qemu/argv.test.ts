import { describe, expect, it } from 'vitest';
import { kernelCmdline, optValue, qemuArgs, type VmLaunch } from '../../../../src/providers/qemu/argv.js';
import { EnvboxError } from '../../../../src/util/errors.js';

const vm = (over: Partial<VmLaunch> = {}): VmLaunch => ({
  id: 'webapp-1a2b3c4d',
  accel: 'tcg',
  cpus: 2,
  memoryBytes: 2 * 2 ** 30,
  kernel: '/cache/vm/k/vmlinuz',
  initrd: '/cache/vm/k/initrd.img',
  disk: '/state/qemu/disk.qcow2',
  sshPort: 40022,
  outbound: false,
  seed: '/state/qemu/seed',
  folders: ['/state/qemu/folders/0'],
  qmp: '/state/qemu/qmp.sock',
  pidFile: '/state/qemu/qemu.pid',
  consoleLog: '/state/qemu/console.log',
  ...over,
});

/** The value following each occurrence of `flag`. */
const values = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

describe('qemuArgs', () => {
  it.each([
    ['tcg', ['tcg,thread=multi'], ['max']],
    ['kvm', ['kvm'], ['host']],
  ] as const)('%s: accelerator and CPU model', (accel, accels, cpus) => {
    const args = qemuArgs(vm({ accel }));
    expect(values(args, '-accel')).toEqual(accels);
    expect(values(args, '-cpu')).toEqual(cpus);
    expect(values(args, '-machine')).toEqual(['q35']);
  });

  it.each([
    [1, 512 * 2 ** 20, '1', '512M'],
    [4, 2 * 2 ** 30, '4', '2048M'],
    [2, 1.5 * 2 ** 30 + 123, '2', '1536M'],
  ])('cpus %d and %d bytes are real limits (-smp %s, -m %s)', (cpus, memoryBytes, smp, m) => {
    const args = qemuArgs(vm({ cpus, memoryBytes }));
    expect(values(args, '-smp')).toEqual([smp]);
    expect(values(args, '-m')).toEqual([m]);
  });

  it.each([
    [false, 'user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,restrict=on'],
    [true, 'user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22'],
  ])('outbound %s: user-mode network with only the sshd forward on loopback', (outbound, netdev) => {
    expect(values(qemuArgs(vm({ outbound })), '-netdev')).toEqual([netdev]);
  });

  it.each([
    [[], ['local,id=seed,path=/state/qemu/seed,security_model=passthrough,readonly=on']],
    [
      ['/p/a', '/p/b,c'],
      [
        'local,id=seed,path=/state/qemu/seed,security_model=passthrough,readonly=on',
        'local,id=fs0,path=/p/a,security_model=passthrough,multidevs=remap',
        'local,id=fs1,path=/p/b,,c,security_model=passthrough,multidevs=remap',
      ],
    ],
  ])('folders %j: a read-only seed share, then one 9p share each', (folders, fsdevs) => {
    const args = qemuArgs(vm({ folders }));
    expect(values(args, '-fsdev')).toEqual(fsdevs);
    expect(values(args, '-device').filter((d) => d.startsWith('virtio-9p-pci'))).toEqual([
      'virtio-9p-pci,fsdev=seed,mount_tag=envbox-seed',
      ...folders.map((_, i) => `virtio-9p-pci,fsdev=fs${i},mount_tag=envbox${i}`),
    ]);
  });

  it('boots the kernel directly, detached, with QMP, a pid file and the console appended to a log', () => {
    const args = qemuArgs(vm());
    expect(values(args, '-kernel')).toEqual(['/cache/vm/k/vmlinuz']);
    expect(values(args, '-initrd')).toEqual(['/cache/vm/k/initrd.img']);
    expect(values(args, '-append')).toEqual([kernelCmdline('tcg')]);
    expect(values(args, '-drive')).toEqual(['if=none,id=disk0,file=/state/qemu/disk.qcow2,format=qcow2,cache=writeback,discard=unmap']);
    expect(values(args, '-qmp')).toEqual(['unix:/state/qemu/qmp.sock,server=on,wait=off']);
    expect(values(args, '-pidfile')).toEqual(['/state/qemu/qemu.pid']);
    expect(values(args, '-chardev')).toEqual(['file,id=console,path=/state/qemu/console.log,append=on']);
    expect(args).toContain('-daemonize');
    expect(args).toContain('-nodefaults');
  });

  it.each([
    [{ cpus: 0 }, /cpus 0/],
    [{ memoryBytes: 64 * 2 ** 20 }, /too little/],
    [{ disk: '/state/a\nb' }, /line break/],
  ] as [Partial<VmLaunch>, RegExp][])('rejects %j', (over, message) => {
    expect(() => qemuArgs(vm(over))).toThrow(EnvboxError);
    expect(() => qemuArgs(vm(over))).toThrow(message);
  });
});

describe('kernelCmdline', () => {
  it('boots read-write (the seed is applied before init) with eth0 and a quick panic', () => {
    expect(kernelCmdline('kvm')).toBe('console=ttyS0 root=/dev/vda rootfstype=ext4 rw net.ifnames=0 quiet panic=-1 8250.nr_uarts=1');
  });
  it('drops the speculation mitigations only under TCG', () => {
    expect(kernelCmdline('tcg')).toMatch(/ mitigations=off$/);
    expect(kernelCmdline('kvm')).not.toMatch(/mitigations/);
  });
});

describe('optValue', () => {
  it.each([
    ['/plain/path', '/plain/path'],
    ['/a,b', '/a,,b'],
    ['/a,,b', '/a,,,,b'],
  ])('%s -> %s', (input, output) => expect(optValue(input)).toBe(output));
});
