import { describe, expect, it } from 'vitest';
import { decideAccel, judgeProbe, type KvmDevice, type KvmProbe } from '../../../../src/providers/qemu/accel.js';
import { EnvboxError } from '../../../../src/util/errors.js';

const boots: KvmProbe = { boots: true, detail: 'ok' };
const hangs: KvmProbe = { boots: false, detail: 'a test boot hung after "Probing EDD"' };

describe('decideAccel', () => {
  it.each([
    ['tcg', 'ok', boots, 'tcg', /accel: tcg/],
    ['auto', 'ok', boots, 'kvm', /KVM works/],
    ['kvm', 'ok', boots, 'kvm', /accel: kvm/],
    ['auto', 'missing', undefined, 'tcg', /\/dev\/kvm does not exist.*TCG/],
    ['auto', 'no-access', undefined, 'tcg', /not accessible.*TCG/],
    ['auto', 'ok', hangs, 'tcg', /cannot boot a Debian kernel here \(a test boot hung after "Probing EDD"\)/],
  ] as [('auto' | 'kvm' | 'tcg'), KvmDevice, KvmProbe | undefined, string, RegExp][])(
    'wanted %s, device %s, probe %j -> %s',
    (wanted, device, probe, kind, reason) => {
      const choice = decideAccel(wanted, device, probe);
      expect(choice.kind).toBe(kind);
      expect(choice.reason).toMatch(reason);
    },
  );

  it.each([
    ['missing', undefined, 'accel: kvm, but /dev/kvm does not exist (no KVM in this kernel, or virtualization is off)'],
    ['ok', hangs, 'accel: kvm, but KVM cannot boot a Debian kernel here (a test boot hung after "Probing EDD")'],
  ] as [KvmDevice, KvmProbe | undefined, string][])('accel: kvm where KVM cannot boot (%s) is a clear error', (device, probe, message) => {
    let error: unknown;
    try {
      decideAccel('kvm', device, probe);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(EnvboxError);
    expect((error as EnvboxError).code).toBe('KVM_UNUSABLE');
    expect((error as EnvboxError).message).toBe(message);
    expect((error as EnvboxError).hint).toMatch(/accel: auto/);
  });
});

describe('judgeProbe', () => {
  it.each([
    [{ code: 0, timedOut: false, console: '[0.9] VFS: Unable to mount root fs on unknown-block(0,0)\n', stderr: '' }, true, /root mount/],
    [{ code: 1, timedOut: false, console: '', stderr: 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0\nAborted' }, false, /^QEMU: failed to set MSR 0x10a/],
    [{ code: 128, timedOut: true, console: 'SeaBIOS\nProbing EDD (edd=off to disable)... ok\n', stderr: '' }, false, /hung after "Probing EDD \(edd=off to disable\)\.\.\. ok"/],
    [{ code: 128, timedOut: true, console: '', stderr: '' }, false, /hung before printing anything/],
    [{ code: 1, timedOut: false, console: '', stderr: 'Could not access KVM kernel module: No such device' }, false, /exit 1: Could not access KVM/],
  ])('%j', (result, ok, detail) => {
    const probe = judgeProbe(result);
    expect(probe.boots).toBe(ok);
    expect(probe.detail).toMatch(detail);
  });
});
