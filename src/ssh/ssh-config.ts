import { createHash } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EnvboxError } from '../util/errors.js';
import { writeFileAtomic } from './atomic.js';

export interface SshConfigEntry {
  /** What the user types: `ssh <alias>`; also the HostKeyAlias the env's known_hosts pins the key under. */
  alias: string;
  hostName: string;
  port: number;
  user: string;
  identityFile: string;
  knownHostsFile: string;
  /** The name the pinned key is kept under in known_hosts, when it is not the alias (one env, several aliases). */
  hostKeyAlias?: string;
}

export interface SshConfigOptions {
  /**
   * A private (0700) folder for OpenSSH connection-sharing sockets. With it, repeated `ssh <alias>` calls
   * (scripts, git, editors) reuse one connection: ~15 ms instead of ~280 ms each. It must be private: a
   * socket another user could plant would be used without any host key check.
   */
  controlDir?: string;
}

/** sun_path holds 108 bytes; OpenSSH binds `<ControlPath>.<16 random chars>` first, then renames it. */
const MAX_CONTROL_PATH = 108 - 1 - 17 - 1;

/** OpenSSH `Host` blocks for the given envs, for a file the user `Include`s from ~/.ssh/config. */
export function renderSshConfig(entries: readonly SshConfigEntry[], opts: SshConfigOptions = {}): string {
  const blocks = entries.map((entry) => {
    check(entry.alias, 'alias', /^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, dots, dashes and underscores');
    check(entry.hostName, 'host name', /^[A-Za-z0-9.:_-]+$/, 'an IP address or a host name');
    check(entry.user, 'user', /^[A-Za-z_][A-Za-z0-9._-]*$/, 'a plain login name');
    if (!Number.isInteger(entry.port) || entry.port < 1 || entry.port > 65535) {
      throw invalid(`port ${entry.port} of ${entry.alias} is not a TCP port`, 'use a port from 1 to 65535');
    }
    const lines = [
      `Host ${entry.alias}`,
      `  HostName ${entry.hostName}`,
      `  Port ${entry.port}`,
      `  User ${entry.user}`,
      `  IdentityFile ${pathArg(entry.identityFile)}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${pathArg(entry.knownHostsFile)}`,
      '  StrictHostKeyChecking yes',
      `  HostKeyAlias ${entry.hostKeyAlias ?? entry.alias}`,
      '  LogLevel ERROR',
    ];
    const controlPath = opts.controlDir === undefined ? undefined : sharedControlPath(entry, opts.controlDir);
    if (controlPath !== undefined) {
      lines.push('  ControlMaster auto', `  ControlPath ${pathArg(controlPath)}`, '  ControlPersist 10m');
    }
    return lines.join('\n');
  });
  return `# Written by envbox: rewritten whenever an env changes, so edits here are lost.\n\n${blocks.join('\n\n')}\n`;
}

/** Writes the config atomically (0600), creating its folder and the control folder (0700) as needed. */
export async function writeSshConfigInclude(
  file: string,
  entries: readonly SshConfigEntry[],
  opts: SshConfigOptions = {},
): Promise<void> {
  const text = renderSshConfig(entries, opts);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  if (opts.controlDir !== undefined) {
    await mkdir(opts.controlDir, { recursive: true, mode: 0o700 });
    await chmod(opts.controlDir, 0o700); // an existing folder may have been made looser
  }
  await writeFileAtomic(file, text, 0o600);
}

/**
 * One socket per env and address: OpenSSH's %C hashes the address but not the alias, so a recreated env
 * that reuses an address could be handed a stale master still attached to its predecessor.
 */
export function sharedControlPath(entry: SshConfigEntry, controlDir: string): string | undefined {
  const key = [entry.alias, entry.hostName, entry.port, entry.user].join('\0');
  const path = `${controlDir.replace(/\/+$/, '')}/${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
  // Too long a path would make every ssh call print an error, so such a setup simply goes without sharing.
  return Buffer.byteLength(path) <= MAX_CONTROL_PATH ? path : undefined;
}

/**
 * A path as one ssh_config argument: quoted (spaces), `%` doubled (OpenSSH expands %-tokens in these
 * keywords). What quoting cannot carry everywhere — control characters, `"`, `\`, `${` — is refused.
 */
export function pathArg(path: string): string {
  if (/[\x00-\x1f\x7f"\\]|\$\{/.test(path)) {
    throw invalid(
      `the path ${JSON.stringify(path)} cannot be written into an ssh_config`,
      'move the envbox state folder (XDG_STATE_HOME) to a path without control characters, quotes, backslashes or ${',
    );
  }
  return `"${path.replaceAll('%', '%%')}"`;
}

function check(value: string, what: string, pattern: RegExp, expected: string): void {
  if (!pattern.test(value)) {
    throw invalid(`the ${what} ${JSON.stringify(value)} cannot be written into an ssh_config`, `use ${expected}`);
  }
}

function invalid(message: string, hint: string): EnvboxError {
  return new EnvboxError('SSH_CONFIG_INVALID', message, { hint });
}
