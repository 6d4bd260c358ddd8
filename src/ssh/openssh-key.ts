/**
 * Just enough of OpenSSH's key formats to make and read the keys envbox needs (the env's login key and the
 * guest's host key, both ed25519), so that creating an env needs neither an SSH library nor ssh-keygen:
 *
 *   public key line      `TYPE BASE64 [comment]`, the blob starting with the string TYPE (RFC 4253 §6.6)
 *   private key file     `-----BEGIN OPENSSH PRIVATE KEY-----`, openssh-key-v1 (OpenSSH's PROTOCOL.key):
 *                        "openssh-key-v1\0", cipher, kdf, kdf options, key count, public blobs, private section
 *
 * Anything else (encrypted keys, PEM formats) is refused: envbox never writes those.
 */

import { generateKeyPairSync, randomBytes } from 'node:crypto';

export interface PublicKey {
  type: string;
  blob: Buffer;
}

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';

/** Reads SSH wire-format fields (uint32, length-prefixed strings) from a buffer, failing on overrun. */
class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  u32(): number {
    if (this.at + 4 > this.buf.length) throw new Error('truncated');
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    if (this.at + n > this.buf.length) throw new Error('truncated');
    const v = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  string(): string {
    return this.bytes().toString('latin1');
  }
}

/** The key type a public key blob names (its first string); undefined when it isn't a well-formed blob. */
function blobType(blob: Buffer): string | undefined {
  try {
    const type = new Reader(blob).string();
    return /^[a-z0-9@.-]+$/i.test(type) ? type : undefined;
  } catch {
    return undefined;
  }
}

/** A `TYPE BASE64 [comment]` line; undefined unless the blob is well formed and names the same type. */
export function parsePublicKeyLine(line: string): PublicKey | undefined {
  const [type, base64] = line.trim().split(/\s+/);
  if (!type || !base64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return undefined;
  const blob = Buffer.from(base64, 'base64');
  return blobType(blob) === type ? { type, blob } : undefined;
}

/** The public half of an unencrypted openssh-key-v1 private key; undefined for anything else. */
export function publicKeyOfPrivate(text: string): PublicKey | undefined {
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) return undefined;
  const body = text.slice(start + BEGIN.length, end).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return undefined;
  const raw = Buffer.from(body, 'base64');
  if (raw.length < MAGIC.length || !raw.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  try {
    const r = new Reader(raw.subarray(MAGIC.length));
    const cipher = r.string();
    const kdf = r.string();
    r.bytes(); // kdf options
    if (cipher !== 'none' || kdf !== 'none' || r.u32() !== 1) return undefined;
    const blob = r.bytes();
    const type = blobType(blob);
    // The private section: two equal check words, then the same key type (an unencrypted key's sanity check).
    const priv = new Reader(r.bytes());
    if (!type || priv.u32() !== priv.u32() || priv.string() !== type) return undefined;
    return { type, blob: Buffer.from(blob) };
  } catch {
    return undefined;
  }
}

/** `TYPE BASE64`, as authorized_keys and known_hosts want it. */
export const publicKeyLine = (key: PublicKey) => `${key.type} ${key.blob.toString('base64')}`;

/** SSH wire-format string: uint32 length, then the bytes. */
function sshString(data: Buffer | string): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

export interface Ed25519Key {
  /** openssh-key-v1, unencrypted, as ssh-keygen writes it (70-column base64 between the armour lines). */
  privateKey: string;
  /** `ssh-ed25519 BASE64` (no comment). */
  publicKey: string;
}

/**
 * A new ed25519 key in OpenSSH's own format (PROTOCOL.key), made with Node's crypto. The raw 32-byte halves
 * come from the JWK export, which keeps leading zero bytes (the public key is always 32 bytes).
 */
export function generateEd25519(comment: string): Ed25519Key {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  if (pub.length !== 32 || seed.length !== 32) throw new Error('ed25519 key halves are not 32 bytes');
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4);
  let section = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  // Padded to the cipher's block size (8 for "none") with 1, 2, 3, …
  const pad = (8 - (section.length % 8)) % 8;
  section = Buffer.concat([section, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const nkeys = Buffer.alloc(4);
  nkeys.writeUInt32BE(1);
  const raw = Buffer.concat([MAGIC, sshString('none'), sshString('none'), sshString(''), nkeys, sshString(blob), sshString(section)]);
  const lines = raw.toString('base64').match(/.{1,70}/g)!;
  return { privateKey: `${BEGIN}\n${lines.join('\n')}\n${END}\n`, publicKey: publicKeyLine({ type: 'ssh-ed25519', blob }) };
}
