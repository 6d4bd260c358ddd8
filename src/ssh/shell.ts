import type { Readable, Writable } from 'node:stream';
import type { Client, ClientChannel } from 'ssh2';
import { runSession, sessionError, shellQuote, toPty, withEnv } from './exec.js';

/** The local side of an interactive session: what process.stdin/stdout are when they are a terminal. */
export interface Terminal {
  stdin: Readable & { isTTY?: boolean; isRaw?: boolean; setRawMode?(raw: boolean): unknown };
  /** Emits 'resize' when the window changes size (Node turns SIGWINCH into that event). */
  stdout: Writable & { columns?: number; rows?: number };
  stderr: Writable;
}

export interface ShellOptions {
  /** Start the shell in this guest folder; the home folder when it does not exist. */
  cwd?: string;
  env?: Record<string, string>;
  /** Defaults to this process's own stdin/stdout/stderr. */
  terminal?: Terminal;
}

/**
 * An interactive login shell in the guest, like `ssh host`: a PTY sized like the local terminal, local input
 * in raw mode (so Ctrl-C and arrow keys reach the guest) and restored afterwards whatever happens, window
 * resizes forwarded. Without a local terminal there is no PTY, so `echo cmd | env ssh` still works.
 * Resolves with the shell's exit status.
 */
export async function shell(client: Client, opts: ShellOptions = {}): Promise<number> {
  const { stdin, stdout, stderr } = opts.terminal ?? process;
  const interactive = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  const pty = interactive ? toPty(windowOf(stdout)) : undefined;
  const command = opts.cwd !== undefined || opts.env ? withEnv(loginCommand(opts.cwd), opts.env) : undefined;
  const wasRaw = stdin.isRaw === true;
  let channel: ClientChannel | undefined;
  const onResize = () => {
    const size = windowOf(stdout);
    channel?.setWindow(size.rows, size.cols, 0, 0);
  };
  try {
    if (interactive) {
      stdin.setRawMode!(true);
      stdout.on('resize', onResize);
    }
    return await new Promise<number>((resolve, reject) => {
      const opened = (err: Error | undefined, ch: ClientChannel) => {
        if (err) return reject(sessionError(client, err, 'opening a shell in the guest'));
        // Listen in this same callback: a session that ends at once can close in the same read that opened it.
        channel = ch;
        runSession(client, ch, { stdin, stdout, stderr }).then(resolve, reject);
      };
      // A `shell` request when nothing needs setting up (closest to plain `ssh host`), otherwise the wrapper command.
      if (command === undefined) client.shell(pty ?? false, opened);
      else client.exec(command, pty ? { pty } : {}, opened);
    });
  } finally {
    stdout.removeListener('resize', onResize);
    if (interactive) stdin.setRawMode!(wasRaw);
    // A paused stdin no longer holds the event loop open once the session is over.
    stdin.pause();
  }
}

/**
 * `cd` into the folder, or tell the user why not and stay home, then replace the wrapper with the user's
 * login shell so the session's exit status is the shell's own.
 */
function loginCommand(cwd: string | undefined): string {
  const enter =
    cwd === undefined
      ? ''
      : `cd -- ${shellQuote([cwd])} 2>/dev/null || { printf 'envbox: %s is not a folder in the guest; ` +
        `starting in your home folder\\n' ${shellQuote([cwd])} >&2; cd; }; `;
  return `${enter}exec "\${SHELL:-/bin/sh}" -l`;
}

function windowOf(stdout: Terminal['stdout']): { rows: number; cols: number; term: string } {
  return { rows: stdout.rows || 24, cols: stdout.columns || 80, term: process.env.TERM || 'xterm-256color' };
}
