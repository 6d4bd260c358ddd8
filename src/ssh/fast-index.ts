/**
 * The shortcut index: what the compiled `env` (native/env-shim.c) needs to run `env ssh -- CMD` and
 * `env exec CMD` itself, through the env's OpenSSH connection-sharing socket, without starting Node.
 * One small file per Envfile, named by a hash of the Envfile's real path. The shim trusts it only while
 * the Envfile and the pinned known_hosts have the size and modification time recorded here; anything
 * else (a changed Envfile, a recreated env, a dead socket) sends it down the ordinary path.
 *
 * Format: NUL-terminated fields, in this order (numbers in decimal):
 *   envbox-fast-1, envfile path, envfile size, mtime s, mtime ns,
 *   known_hosts path, size, mtime s, mtime ns, control socket path,
 *   command prefix (the `export …; ` of the Envfile's env:), folder count, then host and guest per folder.
 */

export const FAST_INDEX_MAGIC = 'envbox-fast-1';

export interface FileStamp {
  path: string;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
}

export interface FastIndex {
  envfile: FileStamp;
  knownHosts: FileStamp;
  socket: string;
  /** Put before every command, as the ordinary path does (withEnv). */
  prefix: string;
  folders: { host: string; guest: string }[];
}

/** 64-bit FNV-1a of the UTF-8 bytes, as 16 hex digits: the index file's name (the shim computes the same). */
export function fnv1a64(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, '0');
}

/** A stat's size and mtime as the shim reads them (st_size, st_mtim). */
export function stampOf(path: string, stat: { size: bigint | number; mtimeNs: bigint }): FileStamp {
  return {
    path,
    size: Number(stat.size),
    mtimeSec: Number(stat.mtimeNs / 1_000_000_000n),
    mtimeNsec: Number(stat.mtimeNs % 1_000_000_000n),
  };
}

export function renderFastIndex(index: FastIndex): Buffer {
  const stamp = (s: FileStamp) => [s.path, String(s.size), String(s.mtimeSec), String(s.mtimeNsec)];
  const fields = [
    FAST_INDEX_MAGIC,
    ...stamp(index.envfile),
    ...stamp(index.knownHosts),
    index.socket,
    index.prefix,
    String(index.folders.length),
    ...index.folders.flatMap((f) => [f.host, f.guest]),
  ];
  for (const field of fields) {
    if (field.includes('\0')) throw new Error(`a shortcut index field holds a NUL byte: ${JSON.stringify(field)}`);
  }
  return Buffer.from(fields.map((f) => `${f}\0`).join(''), 'utf8');
}

/** The inverse of renderFastIndex (used by tests, and to tell a current index from a stale one). */
export function parseFastIndex(data: Buffer): FastIndex | undefined {
  const fields = data.toString('utf8').split('\0');
  if (fields.pop() !== '' || fields[0] !== FAST_INDEX_MAGIC || fields.length < 12) return undefined;
  const stamp = (at: number): FileStamp => ({
    path: fields[at],
    size: Number(fields[at + 1]),
    mtimeSec: Number(fields[at + 2]),
    mtimeNsec: Number(fields[at + 3]),
  });
  const count = Number(fields[11]);
  if (!Number.isInteger(count) || fields.length !== 12 + 2 * count) return undefined;
  const folders = Array.from({ length: count }, (_, i) => ({ host: fields[12 + 2 * i], guest: fields[13 + 2 * i] }));
  return { envfile: stamp(1), knownHosts: stamp(5), socket: fields[9], prefix: fields[10], folders };
}
