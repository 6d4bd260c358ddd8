import { EnvboxError } from '../util/errors.js';

/** POSIX shell quoting for guest command lines (no SSH here, so it loads without ssh2). */

/** Words a POSIX shell reads literally; `=` is left out so a first word is never taken as an assignment. */
const PLAIN_WORD = /^[A-Za-z0-9_@+:,./-]+$/;

/** One argv as a POSIX shell command line: the guest's login shell splits it back into exactly these words. */
export function shellQuote(args: readonly string[]): string {
  return args.map(quoteWord).join(' ');
}

function quoteWord(word: string): string {
  if (word.includes('\0')) {
    throw new EnvboxError('SSH_BAD_ARGUMENT', `the argument ${JSON.stringify(word)} contains a NUL byte`, {
      hint: 'a command-line argument cannot hold a NUL byte; pass such data on stdin instead',
    });
  }
  if (PLAIN_WORD.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** `export A='1' B='2'; command` — works in every POSIX login shell, whatever sshd's AcceptEnv says. */
export function withEnv(command: string, env: Record<string, string> | undefined): string {
  const entries = Object.entries(env ?? {});
  if (entries.length === 0) return command;
  for (const [name] of entries) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new EnvboxError('SSH_BAD_ENV', `"${name}" is not a valid environment variable name`, {
        hint: 'use letters, digits and underscores, not starting with a digit',
      });
    }
  }
  return `export ${entries.map(([name, value]) => `${name}=${quoteWord(value)}`).join(' ')}; ${command}`;
}
