import { spawn } from 'node:child_process';

/**
 * Runs a program on a real pseudo-terminal (Python's pty module relays it) and answers its
 * prompts: each step waits until the screen output matches `expect`, then types `send`.
 */
export async function interact(
  argv: string[],
  steps: { expect: RegExp; send: string }[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number; output: string }> {
  const relay = 'import os, pty, sys\nsys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))';
  const child = spawn('python3', ['-c', relay, ...argv], {
    cwd: opts.cwd,
    env: { ...process.env, TERM: 'xterm', COLUMNS: '100', LINES: '30', ...opts.env },
  });
  let output = '';
  let waiting: (() => void) | undefined;
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
    waiting?.();
  });
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  try {
    let from = 0;
    for (const step of steps) {
      while (!step.expect.test(output.slice(from))) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${step.expect}; screen so far:\n${output}`);
        await new Promise<void>((resolve) => {
          waiting = resolve;
          setTimeout(resolve, 100);
        });
      }
      from = output.length;
      child.stdin.write(step.send);
    }
    const code = await Promise.race([
      exited,
      new Promise<number>((_, reject) => setTimeout(() => reject(new Error(`no exit; screen:\n${output}`)), Math.max(0, deadline - Date.now()))),
    ]);
    return { code, output };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}
