import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureUserKey, generateHostKey } from '../../../src/ssh/index.js';
import { runOk } from '../../../src/util/exec.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-keys-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What OpenSSH derives from a private key file: proof that ssh and sshd can load it. */
async function openSshPublicKey(privateKeyPath: string): Promise<string> {
  return (await runOk('ssh-keygen', ['-y', '-f', privateKeyPath])).stdout.trim();
}

const withoutComment = (line: string) => line.split(' ').slice(0, 2).join(' ');

describe('ensureUserKey', () => {
  it('creates an ed25519 key OpenSSH reads, private 0600, named after the env', async () => {
    const stateDir = join(dir, 'webapp-1a2b');
    const key = await ensureUserKey(stateDir);
    expect(key.privateKeyPath).toBe(join(stateDir, 'id_ed25519'));
    expect(key.publicKey).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/]+=* envbox@webapp-1a2b$/);
    expect((await stat(key.privateKeyPath)).mode & 0o777).toBe(0o600);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    expect(await readFile(key.privateKeyPath, 'utf8')).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    expect(await readFile(`${key.privateKeyPath}.pub`, 'utf8')).toBe(`${key.publicKey}\n`);
    expect(withoutComment(await openSshPublicKey(key.privateKeyPath))).toBe(withoutComment(key.publicKey));
  });

  it('keeps the key it made, rewrites a lost .pub and tightens a loosened mode', async () => {
    const stateDir = join(dir, 'keep');
    const first = await ensureUserKey(stateDir);
    await rm(`${first.privateKeyPath}.pub`);
    await chmod(first.privateKeyPath, 0o644);
    const again = await ensureUserKey(stateDir);
    expect(again).toEqual(first);
    expect(await readFile(`${first.privateKeyPath}.pub`, 'utf8')).toBe(`${first.publicKey}\n`);
    expect((await stat(first.privateKeyPath)).mode & 0o777).toBe(0o600);
  });

  it('gives concurrent callers on a fresh env the same key', async () => {
    const stateDir = join(dir, 'race');
    const keys = await Promise.all(Array.from({ length: 6 }, () => ensureUserKey(stateDir)));
    expect(new Set(keys.map((k) => k.publicKey)).size).toBe(1);
  });

  it('refuses a damaged key instead of replacing the one the guest trusts', async () => {
    const stateDir = join(dir, 'damaged');
    const key = await ensureUserKey(stateDir);
    await writeFile(key.privateKeyPath, 'not a key\n');
    await expect(ensureUserKey(stateDir)).rejects.toMatchObject({
      code: 'SSH_KEY_INVALID',
      hint: expect.stringContaining('env destroy && env up'),
    });
  });
});

describe('generateHostKey', () => {
  it('makes a fresh ed25519 host key that OpenSSH loads, with the matching public line', async () => {
    const a = await generateHostKey();
    const b = await generateHostKey();
    expect(a.publicKey).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/]+=*$/);
    expect(a.publicKey).not.toBe(b.publicKey);
    const file = join(dir, 'ssh_host_ed25519_key');
    await writeFile(file, a.privateKey, { mode: 0o600 });
    expect(withoutComment(await openSshPublicKey(file))).toBe(a.publicKey);
  });
});
