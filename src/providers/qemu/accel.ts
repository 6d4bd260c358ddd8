import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { run } from '../../util/exec.js';
import { hostStateDir } from '../../util/paths.js';

/**
 * KVM or TCG. /dev/kvm existing is not enough: on a PVM host (a VM that offers KVM to its own guests
 * only for PVM-aware kernels) a stock Debian kernel either stops dead in its real-mode setup ("Probing
 * EDD", then nothing, forever) or QEMU aborts with "failed to set MSR 0x10a" under -cpu host. So `auto`
 * boots the image's kernel once under KVM, with no root filesystem, and takes KVM only if it gets as far
 * as the kernel's panic about the missing root (about a second where KVM works). The answer is cached
 * per host kernel and QEMU version, so only the first VM on a host pays for the probe.
 */

export type AccelWanted = 'auto' | 'kvm' | 'tcg';

export interface AccelChoice {
  kind: 'kvm' | 'tcg';
  /** Why, in words for env status and env doctor. */
  reason: string;
}

export type KvmDevice = 'missing' | 'no-access' | 'ok';

export interface KvmProbe {
  boots: boolean;
  detail: string;
}

const PROBE_TIMEOUT_MS = 15_000;
/** What a kernel prints once it is fully up and finds no root filesystem: KVM ran it all the way. */
const PROBE_REACHED = /VFS: Unable to mount root|Kernel panic|Run \/init|No working init/;

/** The decision, from what is known about KVM here. `probe` is only consulted when the device is usable. */
export function decideAccel(wanted: AccelWanted, device: KvmDevice, probe: KvmProbe | undefined): AccelChoice {
  if (wanted === 'tcg') return { kind: 'tcg', reason: 'accel: tcg in the Envfile' };
  const unusable =
    device === 'missing'
      ? '/dev/kvm does not exist (no KVM in this kernel, or virtualization is off)'
      : device === 'no-access'
        ? '/dev/kvm is not accessible to this user'
        : probe && !probe.boots
          ? `KVM cannot boot a Debian kernel here (${probe.detail})`
          : undefined;
  if (!unusable) return { kind: 'kvm', reason: wanted === 'kvm' ? 'accel: kvm in the Envfile' : 'KVM works on this host' };
  if (wanted === 'kvm') {
    throw new EnvboxError('KVM_UNUSABLE', `accel: kvm, but ${unusable}`, {
      hint: 'set accel: auto (or tcg) in the Envfile to boot with QEMU\'s emulator instead; it is several times slower',
    });
  }
  return { kind: 'tcg', reason: `${unusable}: emulating with TCG` };
}

export async function kvmDevice(): Promise<KvmDevice> {
  if (!(await access('/dev/kvm').then(() => true, () => false))) return 'missing';
  return (await access('/dev/kvm', constants.R_OK | constants.W_OK).then(() => true, () => false)) ? 'ok' : 'no-access';
}

/** Reads a probe's outcome: reaching the root-mount panic is success; anything else says why not. */
export function judgeProbe(result: { code: number; timedOut: boolean; console: string; stderr: string }): KvmProbe {
  if (PROBE_REACHED.test(result.console)) return { boots: true, detail: 'a test boot reached the kernel\'s root mount' };
  const msr = /failed to set MSR[^\n]*/.exec(result.stderr)?.[0];
  if (msr) return { boots: false, detail: `QEMU: ${msr.trim()}` };
  if (result.timedOut) {
    const last = result.console.trim().split('\n').at(-1)?.trim();
    return { boots: false, detail: `a test boot hung${last ? ` after "${last.slice(0, 60)}"` : ' before printing anything'}` };
  }
  const err = result.stderr.trim().split('\n').at(-1)?.trim();
  return { boots: false, detail: `a test boot failed (exit ${result.code}${err ? `: ${err.slice(0, 120)}` : ''})` };
}

const cacheFile = () => join(hostStateDir(), 'qemu-accel.json');

async function qemuVersion(): Promise<string> {
  const result = await run('qemu-system-x86_64', ['--version']);
  return result.stdout.split('\n')[0]?.trim() ?? '';
}

/** The cached probe for this host kernel and QEMU, if one ran. */
export async function cachedProbe(): Promise<KvmProbe | undefined> {
  const cached = (await readFile(cacheFile(), 'utf8').then(JSON.parse, () => undefined)) as
    | { host: string; qemu: string; probe: KvmProbe }
    | undefined;
  return cached && cached.host === release() && cached.qemu === (await qemuVersion()) ? cached.probe : undefined;
}

/** Boots `kernel` under KVM with no root filesystem and judges how far it got; cached. */
export async function probeKvm(kernel: string): Promise<KvmProbe> {
  const cached = await cachedProbe();
  if (cached) return cached;
  const dir = await mkdtemp(join(tmpdir(), 'envbox-kvm-probe-'));
  try {
    const log = join(dir, 'console.log');
    const args = ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-machine', 'q35', '-accel', 'kvm', '-cpu', 'host'];
    args.push('-m', '256', '-kernel', kernel, '-append', 'console=ttyS0 panic=-1 root=/dev/null', '-serial', `file:${log}`);
    const result = await run('qemu-system-x86_64', args, { timeoutMs: PROBE_TIMEOUT_MS });
    const console = await readFile(log, 'utf8').catch(() => '');
    // run() kills the child on timeout and reports it as a signal exit.
    const probe = judgeProbe({ code: result.code, timedOut: result.code === 128 && !PROBE_REACHED.test(console), console, stderr: result.stderr });
    await mkdir(hostStateDir(), { recursive: true, mode: 0o700 });
    const tmp = `${cacheFile()}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ host: release(), qemu: await qemuVersion(), probe, at: new Date().toISOString() })}\n`);
    await rename(tmp, cacheFile());
    return probe;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** KVM or TCG for this boot; probes KVM (once per host) only when it could be used. */
export async function chooseAccel(wanted: AccelWanted, kernel: string): Promise<AccelChoice> {
  const device = wanted === 'tcg' ? 'missing' : await kvmDevice();
  const probe = device === 'ok' ? await probeKvm(kernel) : undefined;
  return decideAccel(wanted, device, probe);
}

/** What env doctor says, without probing (doctor changes nothing). */
export async function describeAccel(): Promise<string> {
  const device = await kvmDevice();
  if (device !== 'ok') return decideAccel('auto', device, undefined).reason;
  const probe = await cachedProbe();
  if (!probe) return 'KVM: /dev/kvm is usable; the first VM up checks it can boot a Debian kernel';
  return decideAccel('auto', device, probe).reason;
}
