import { open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { EnvboxError } from '../../util/errors.js';
import { run } from '../../util/exec.js';
import type { Progress } from '../../util/progress.js';
import { qemuArgs, type VmLaunch } from './argv.js';
import type { VmPaths } from './layout.js';
import { withQmp } from './qmp.js';

/** The running QEMU process of an env: launched detached, watched through its pid file, console log and QMP. */

/** QEMU's pid if it is running for these paths (the pid file alone could name a reused pid). */
export async function qemuPid(paths: VmPaths): Promise<number | undefined> {
  const pid = Number.parseInt(await readFile(paths.pid, 'utf8').catch(() => ''), 10);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').some((arg) => arg.includes(paths.qmp)) ? pid : undefined;
}

/** The size of the console log now: the next boot's messages start there. */
export async function consoleOffset(paths: VmPaths): Promise<number> {
  return (await stat(paths.consoleLog).catch(() => undefined))?.size ?? 0;
}

/** The last lines the guest printed since `from`, without terminal escapes. */
export async function consoleTail(paths: VmPaths, from: number, lines = 15): Promise<string[]> {
  const handle = await open(paths.consoleLog, 'r').catch(() => undefined);
  if (!handle) return [];
  try {
    const size = (await handle.stat()).size;
    const start = Math.max(from, size - 64 * 1024);
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(Math.max(0, size - start)), 0, Math.max(0, size - start), start);
    return buffer
      .subarray(0, bytesRead)
      .toString('utf8')
      .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
      .split(/\r?\n/)
      .map((l) => l.trimEnd())
      .filter(Boolean)
      .slice(-lines);
  } finally {
    await handle.close();
  }
}

/** Starts QEMU detached (-daemonize): it returns once the VM exists, with its stderr kept in qemu.log. */
export async function launch(vm: VmLaunch, paths: VmPaths): Promise<void> {
  await rm(paths.qmp, { force: true });
  const result = await run('qemu-system-x86_64', qemuArgs(vm));
  await writeFile(paths.qemuLog, result.stderr);
  if (result.code !== 0) {
    const why = result.stderr.trim().split('\n').slice(-5).join('\n');
    const busy = /Could not set up host forwarding rule/.test(why);
    throw new EnvboxError('VM_START', `QEMU could not start the VM (exit ${result.code}):\n${why}`, {
      hint: busy
        ? `another program listens on 127.0.0.1:${vm.sshPort}, the port this env's SSH is pinned to: stop it, or env destroy && env up`
        : `see ${paths.qemuLog}; env doctor checks the QEMU install`,
    });
  }
}

/** Reads the SSH banner through the forward: QEMU's side of the port accepts even while the guest isn't listening. */
function sshBanner(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.startsWith('SSH-')) done(true);
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

/** What the guest printed that means this boot will never reach sshd. */
const BOOT_FAILED = /Kernel panic|Gave up waiting for root|ALERT! .* does not exist|Dropping to a shell/;

/**
 * Waits until the guest's sshd answers through the forward. Fails at once, quoting the console, when
 * QEMU exits or the guest panics; when `timeoutMs` passes, too.
 */
export async function waitForSshd(paths: VmPaths, port: number, from: number, timeoutMs: number, progress: Progress): Promise<void> {
  const started = Date.now();
  const failure = async (code: string, what: string, hint: string) => {
    const tail = await consoleTail(paths, from);
    return new EnvboxError(code, `${what}${tail.length ? `; the console's last lines:\n${tail.map((l) => `  ${l}`).join('\n')}` : ' (the console is empty)'}`, {
      hint: `${hint}; the whole console is in ${paths.consoleLog}`,
      details: { console: paths.consoleLog },
    });
  };
  for (;;) {
    if (await sshBanner(port, 2_000)) return warmUp(port, progress);
    if (!(await qemuPid(paths))) throw await failure('VM_EXITED', 'the VM stopped while booting', `QEMU's own messages are in ${paths.qemuLog}`);
    const tail = (await consoleTail(paths, from, 40)).join('\n');
    if (BOOT_FAILED.test(tail)) {
      await kill(paths);
      throw await failure('VM_BOOT_FAILED', 'the guest kernel could not boot', 'env destroy && env up rebuilds the disk; a rebuilt image (env image build --force) fixes a broken one');
    }
    const elapsed = Math.round((Date.now() - started) / 1000);
    if (Date.now() - started > timeoutMs) {
      await kill(paths);
      throw await failure('VM_BOOT_TIMEOUT', `the guest's sshd did not answer within ${elapsed} s`, 'the host may be too busy for an emulated (TCG) VM; env up tries again');
    }
    progress.update(`booting: waiting for the guest's sshd (${elapsed} s)`);
    await sleep(500);
  }
}

/**
 * One key exchange with the fresh sshd before core's first login. Under TCG the first connection pays
 * for translating sshd's and libcrypto's code (several seconds on a busy host); QEMU keeps that
 * translation while the guest runs, so the login that follows is quick. Failure changes nothing.
 */
async function warmUp(port: number, progress: Progress): Promise<void> {
  progress.update("booting: first key exchange with the guest's sshd");
  await run('ssh-keyscan', ['-T', '60', '-t', 'ed25519', '-p', String(port), '127.0.0.1']).catch(() => undefined);
}

/** Waits up to `ms` for QEMU to exit; true when it did. */
async function exited(paths: VmPaths, ms: number): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(100)) {
    if (!(await qemuPid(paths))) return true;
  }
  return !(await qemuPid(paths));
}

/** Forced stop: QMP quit, then SIGKILL to the pid envbox launched if QEMU doesn't go. */
export async function kill(paths: VmPaths): Promise<void> {
  const pid = await qemuPid(paths);
  if (!pid) return;
  await withQmp(paths.qmp, (qmp) => qmp.execute('quit')).catch(() => {});
  if (await exited(paths, 3_000)) return;
  process.kill(pid, 'SIGKILL');
  await exited(paths, 3_000);
}

const CTRL_ALT_DEL = ['ctrl', 'alt', 'delete'].map((key) => ({ type: 'qcode', data: key }));

/**
 * Clean shutdown, then `quit` when the guest hasn't powered off within `timeoutMs`. Two requests: the
 * ACPI power button (what images with systemd-logind or acpid obey) and Ctrl-Alt-Del, which envbox's
 * VM images map to poweroff (they run no logind; see images/vm-guest.ts).
 */
export async function shutdown(paths: VmPaths, timeoutMs: number): Promise<void> {
  if (!(await qemuPid(paths))) return;
  // A paused VM can't react to either: let it run first.
  await withQmp(paths.qmp, async (qmp) => {
    await qmp.execute('cont');
    await qmp.execute('system_powerdown');
    await qmp.execute('send-key', { keys: CTRL_ALT_DEL });
  }).catch(() => {});
  if (await exited(paths, timeoutMs)) return;
  await kill(paths);
}
