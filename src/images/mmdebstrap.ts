import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { access, readdir, readFile } from 'node:fs/promises';
import { EnvboxError } from '../util/errors.js';
import { findOnPath } from '../util/exec.js';
import type { ResolvedRecipe } from './recipe.js';

/** Shipped with mmdebstrap: runs dpkg under eatmydata inside the chroot (needs dpkg-architecture on the host). */
const EATMYDATA_HOOKS = '/usr/share/mmdebstrap/hooks/eatmydata';
/** The host's apt, pointed at the target's sources and lists (package names are validated, safe in a shell line). */
const CHECK_PACKAGES =
  'apt-get -o Dir="$1" -o Dir::State::Status="$1/var/lib/dpkg/status" --simulate --no-install-recommends --quiet=2 install';
/** How long mmdebstrap gets to unmount and exit after SIGTERM before its whole tree is killed. */
const KILL_GRACE_MS = 10_000;

/**
 * mmdebstrap's command line for a recipe. `--format=directory` writes the tree in place: for bookworm,
 * `--format=tar` plus extracting took ~124 s here against ~61 s. `--verbose` is what progress is read from.
 */
export function mmdebstrapArgs(recipe: ResolvedRecipe, target: string, opts: { eatmydata: boolean }): string[] {
  return [
    '--mode=root',
    '--format=directory',
    '--verbose',
    `--variant=${recipe.variant}`,
    `--components=${recipe.components.join(',')}`,
    `--include=${recipe.packages.join(',')}`,
    // dpkg syncs every file it writes: most of the install time on a VM disk. The build syncs once at the end.
    '--dpkgopt=force-unsafe-io',
    ...(opts.eatmydata ? [`--hook-dir=${EATMYDATA_HOOKS}`] : []),
    // apt resolves --include only when it installs those packages in the chroot, ~45 s in. Asking it right
    // after the essential packages are fetched makes a misspelt package fail in ~20 s instead.
    `--extract-hook=${CHECK_PACKAGES} ${recipe.packages.join(' ')} >/dev/null`,
    // mmdebstrap leaves its --dpkgopt file in the image; the guest's own dpkg keeps its safe default.
    '--customize-hook=rm -f "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap',
    recipe.suite,
    target,
    ...(recipe.mirror ? [recipe.mirror] : []),
  ];
}

/** eatmydata took a bookworm build from ~95 s to ~60 s here; without it the build is only slower. */
export async function eatmydataUsable(): Promise<boolean> {
  return (await access(EATMYDATA_HOOKS).then(() => true, () => false)) && findOnPath('dpkg-architecture') !== undefined;
}

export interface MmdebstrapResult {
  code: number;
  lines: string[];
  aborted: boolean;
}

/**
 * Runs mmdebstrap, handing each output line to `onLine`. On abort its whole process tree gets SIGTERM:
 * mmdebstrap's parent ignores signals and waits for its worker, and the worker is what unmounts /proc,
 * /sys and /dev from the target. Resolves only once mmdebstrap has exited, so the caller can clean up.
 */
export function runMmdebstrap(args: string[], onLine: (line: string) => void, signal?: AbortSignal): Promise<MmdebstrapResult> {
  if (signal?.aborted) return Promise.resolve({ code: 130, lines: [], aborted: true });
  return new Promise((resolve, reject) => {
    // apt and dpkg translate their messages; the progress parser reads the English ones.
    const env = { ...process.env, LC_ALL: 'C.UTF-8', LANGUAGE: '' };
    const child = spawn('mmdebstrap', args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    const lines: string[] = [];
    let killTimer: NodeJS.Timeout | undefined;
    const emit = (line: string) => {
      if (!line) return;
      lines.push(line);
      onLine(line);
    };
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const parts = (partial + chunk).split(/\r?\n|\r/);
        partial = parts.pop() ?? '';
        parts.forEach(emit);
      });
      stream.on('end', () => emit(partial));
    }
    const stop = () => {
      if (child.pid === undefined) return;
      const pid = child.pid;
      void signalTree(pid, 'SIGTERM');
      killTimer = setTimeout(() => void signalTree(pid, 'SIGKILL'), KILL_GRACE_MS);
    };
    signal?.addEventListener('abort', stop, { once: true });
    child.on('error', (err: NodeJS.ErrnoException) => {
      signal?.removeEventListener('abort', stop);
      reject(
        err.code === 'ENOENT'
          ? new EnvboxError('COMMAND_MISSING', 'mmdebstrap is not installed', { hint: 'install it: apt-get install mmdebstrap' })
          : err,
      );
    });
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', stop);
      clearTimeout(killTimer);
      resolve({ code: code ?? 128 + (sig ? osConstants.signals[sig] : 0), lines, aborted: signal?.aborted ?? false });
    });
  });
}

/** Signals `pid` and every process below it (found through /proc, so only what this build started). */
async function signalTree(pid: number, sig: NodeJS.Signals): Promise<void> {
  for (const p of [pid, ...(await descendants(pid))]) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}

async function descendants(root: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so parse after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid) children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  for (let queue = [root]; queue.length > 0; ) {
    const next = children.get(queue.shift()!) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}
