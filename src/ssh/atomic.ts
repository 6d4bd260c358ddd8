import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';

/**
 * Writes a whole file or nothing: a reader (OpenSSH, another envbox process) never sees a half-written
 * key or config. The temp file is created fresh with `mode`, so a secret is never briefly world-readable.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
