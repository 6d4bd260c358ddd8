import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureImage, ensureVmImage } from '../../../src/images/index.js';
import { chooseAccel, kvmDevice } from '../../../src/providers/qemu/accel.js';
import { qemuProvider } from '../../../src/providers/qemu/index.js';
import type { GuestSpec } from '../../../src/providers/provider.js';
import { EnvboxError } from '../../../src/util/errors.js';
import { silentProgress } from '../../../src/util/progress.js';

// On the real host: `auto` always settles on an accelerator with a reason, and `kvm` either works or
// fails with KVM_UNUSABLE within seconds; it never hangs on a host whose KVM can't boot Debian.

async function kernel(): Promise<string> {
  const base = await ensureImage('debian/bookworm', silentProgress);
  return (await ensureVmImage(base, silentProgress)).kernel;
}

describe('choosing KVM or TCG on this host', () => {
  it('auto picks one and says why', async () => {
    const choice = await chooseAccel('auto', await kernel());
    expect(['kvm', 'tcg']).toContain(choice.kind);
    expect(choice.reason.length).toBeGreaterThan(10);
  });

  it('kvm works or is a clear error, quickly', async () => {
    const path = await kernel();
    const started = Date.now();
    const auto = await chooseAccel('auto', path);
    if (auto.kind === 'kvm') {
      expect((await chooseAccel('kvm', path)).kind).toBe('kvm');
    } else {
      const error = await chooseAccel('kvm', path).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(EnvboxError);
      expect((error as EnvboxError).code).toBe('KVM_UNUSABLE');
      expect((error as EnvboxError).message).toMatch(/^accel: kvm, but /);
      expect((error as EnvboxError).hint).toMatch(/accel: auto/);
    }
    // The probe is cached per host: the second answer takes no test boot.
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('tcg never needs /dev/kvm', async () => {
    expect(await chooseAccel('tcg', '/nonexistent')).toEqual({ kind: 'tcg', reason: 'accel: tcg in the Envfile' });
    expect(['missing', 'no-access', 'ok']).toContain(await kvmDevice());
  });

  it('a VM with accel: kvm where KVM cannot boot is refused before anything is made', async () => {
    const path = await kernel();
    if ((await chooseAccel('auto', path)).kind === 'kvm') return;
    const stateDir = await mkdtemp(join(tmpdir(), 'envbox-accel-'));
    try {
      const base = await ensureImage('debian/bookworm', silentProgress);
      const spec: GuestSpec & { accel: 'kvm' } = {
        id: 'accel-kvm-0000',
        hostname: 'accel',
        stateDir,
        rootfs: base.rootfs,
        user: { name: 'dev', uid: 1000, gid: 1000, home: '/home/dev', authorizedKey: 'ssh-ed25519 AAAA test' },
        folders: [],
        network: { outbound: false },
        accel: 'kvm',
      };
      await expect(qemuProvider.create(spec, silentProgress)).rejects.toMatchObject({ code: 'KVM_UNUSABLE' });
      expect(existsSync(join(stateDir, 'qemu'))).toBe(false);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
