import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { EnvboxError } from '../util/errors.js';
import { writeFileAtomic } from './atomic.js';
import { parsePublicKeyLine, publicKeyLine } from './openssh-key.js';

/** One host key pinned for a name: its type (`ssh-ed25519`) and its wire-format blob. */
export interface PinnedKey {
  type: string;
  blob: Buffer;
}

export interface HostPin {
  /** `ssh-ed25519 AAAA...` (a trailing comment is dropped). */
  publicKey: string;
  /** The guest address the host dials. */
  address: string;
  port?: number;
  /** The name OpenSSH looks the key up by through `HostKeyAlias` (`envbox-<id>`). */
  alias: string;
}

/** How OpenSSH names a host in known_hosts: bare on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port = 22): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/**
 * Writes the env's known_hosts: one line naming both the guest address and the alias, so ssh2 (by
 * address) and OpenSSH through the generated ssh_config (by HostKeyAlias) check the same pinned key.
 */
export async function writeKnownHosts(file: string, pin: HostPin): Promise<void> {
  const key = parsePublicKeyLine(pin.publicKey);
  if (!key) {
    throw new EnvboxError('HOSTKEY_INVALID', `cannot pin "${pin.publicKey.slice(0, 40)}…": not an OpenSSH public key line`, {
      hint: 'this is a bug in envbox: the host key it generated is not an OpenSSH public key',
    });
  }
  const names = [pin.alias, knownHostsName(pin.address, pin.port)];
  for (const name of names) {
    if (!/^[\w.:[\]-]+$/.test(name)) {
      throw new EnvboxError('HOSTKEY_INVALID', `"${name}" cannot be written as a known_hosts name`, {
        hint: 'use a plain IP address or host name and an alias of letters, digits, dots and dashes',
      });
    }
  }
  const line = `${names.join(',')} ${publicKeyLine(key)}\n`;
  await writeFileAtomic(file, line, 0o600);
}

/** Keys pinned for `name` in known_hosts text; hashed, comment and marker (`@…`) lines are never ours: skipped. */
export function parseKnownHosts(text: string, name: string): PinnedKey[] {
  const keys: PinnedKey[] = [];
  for (const raw of text.split('\n')) {
    const [names, type, base64] = raw.trim().split(/\s+/);
    if (!names || !type || !base64 || names.startsWith('#') || names.startsWith('@')) continue;
    if (names.split(',').includes(name)) keys.push({ type, blob: Buffer.from(base64, 'base64') });
  }
  return keys;
}

/** The keys pinned for `name`; a missing file or entry is an error, because connecting unpinned is never allowed. */
export async function readPinnedKeys(file: string, name: string): Promise<PinnedKey[]> {
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const keys = parseKnownHosts(text, name);
  if (keys.length === 0) {
    throw new EnvboxError('HOSTKEY_NOT_PINNED', `no host key is pinned for ${name} in ${file}`, {
      hint: "the env's state is incomplete; run `env destroy && env up` to recreate it with a pinned key",
    });
  }
  return keys;
}

/** `SHA256:<base64 without padding>`, the fingerprint OpenSSH prints. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type named inside a wire-format blob (a length-prefixed string comes first). */
function blobType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const len = blob.readUInt32BE(0);
  return len > 0 && len < 64 && blob.length >= 4 + len ? blob.toString('latin1', 4, 4 + len) : 'unknown';
}

export interface HostTarget {
  env: string;
  host: string;
  port: number;
}

export interface PinnedVerifier {
  /** ssh2's `hostVerifier`: true only when the presented key is one of the pinned ones. */
  verify: (key: Buffer) => boolean;
  /** Why the last key was refused; ssh2 itself only reports "Host denied". */
  rejection: () => EnvboxError | undefined;
}

export function pinnedHostVerifier(pinned: readonly PinnedKey[], target: HostTarget): PinnedVerifier {
  let refused: EnvboxError | undefined;
  const verify = (key: Buffer): boolean => {
    // Lengths are public (they follow from the key type); the bytes are compared in constant time.
    if (pinned.some((p) => p.blob.length === key.length && timingSafeEqual(p.blob, key))) return true;
    const presented = `${fingerprint(key)} (${blobType(key)})`;
    const expected = pinned.map((p) => `${fingerprint(p.blob)} (${p.type})`);
    refused = new EnvboxError(
      'HOSTKEY_MISMATCH',
      `the guest of env "${target.env}" at ${target.host}:${target.port} presented a host key that is not the one ` +
        `pinned when the env was created\n  pinned:    ${expected.join(', ')}\n  presented: ${presented}`,
      {
        hint:
          'if you rebuilt or replaced the guest yourself, run `env destroy && env up`; otherwise someone may be ' +
          'intercepting the connection — do not connect until you know why the key changed',
        details: { env: target.env, host: target.host, port: target.port, pinned: expected, presented },
      },
    );
    return false;
  };
  return { verify, rejection: () => refused };
}
