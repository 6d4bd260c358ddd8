import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { EnvboxError } from '../util/errors.js';
import { writeFileAtomic } from './atomic.js';
import { generateEd25519, publicKeyLine, publicKeyOfPrivate } from './openssh-key.js';

export interface UserKey {
  privateKeyPath: string;
  /** One OpenSSH line, `ssh-ed25519 AAAA... envbox@<id>`, for the guest's authorized_keys. */
  publicKey: string;
}

export interface HostKey {
  /** OpenSSH private key for the guest's /etc/ssh/ssh_host_ed25519_key. */
  privateKey: string;
  /** `ssh-ed25519 AAAA...`, the line the env's known_hosts pins. */
  publicKey: string;
}

/**
 * The env's login key: `<stateDir>/id_ed25519` (0600) and its `.pub`, made on first call and reused after,
 * so the key installed in the guest keeps working. The state folder's name is the env id.
 */
export async function ensureUserKey(stateDir: string): Promise<UserKey> {
  const privateKeyPath = join(stateDir, 'id_ed25519');
  const comment = `envbox@${basename(stateDir)}`;
  let pem = await readIfExists(privateKeyPath);
  if (pem === undefined) {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await createExclusive(privateKeyPath, comment);
    pem = (await readIfExists(privateKeyPath))!;
  }
  // Read without an SSH library: the key is one envbox wrote (openssh-key-v1, unencrypted; older envs' keys came from ssh-keygen, in the same format).
  const parsed = publicKeyOfPrivate(pem);
  if (!parsed) {
    throw new EnvboxError('SSH_KEY_INVALID', `${privateKeyPath} is not a usable SSH private key`, {
      hint:
        'the guest only accepts the key it was created with; run `env destroy && env up` to recreate the env ' +
        'with a new key',
    });
  }
  // OpenSSH refuses a key other users can read ("UNPROTECTED PRIVATE KEY FILE"), so repair a loosened mode.
  if (((await stat(privateKeyPath)).mode & 0o077) !== 0) await chmod(privateKeyPath, 0o600);
  const publicKey = `${publicKeyLine(parsed)} ${comment}`;
  const pubPath = `${privateKeyPath}.pub`;
  // The private key is the source of truth; the .pub is rewritten if a crash or a user left it stale.
  if ((await readIfExists(pubPath))?.trim() !== publicKey) await writeFileAtomic(pubPath, `${publicKey}\n`, 0o644);
  return { privateKeyPath, publicKey };
}

/** A fresh ed25519 host key for a new guest's sshd, made on the host so it can be pinned before first boot. */
export async function generateHostKey(): Promise<HostKey> {
  return generateEd25519('');
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Creates the key at `file` only if it does not exist yet (link(2) fails with EEXIST instead of replacing
 * it), so two processes racing on a fresh env agree on one key instead of each keeping the one it wrote.
 */
async function createExclusive(file: string, comment: string): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, generateEd25519(comment).privateKey, { mode: 0o600, flag: 'wx' });
    await link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}
