import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEd25519, parsePublicKeyLine, publicKeyLine, publicKeyOfPrivate } from '../../../src/ssh/openssh-key.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-osshkey-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A key made by OpenSSH's ssh-keygen, as envbox makes them. */
async function keygen(name: string, type: string, passphrase = ''): Promise<{ priv: string; pub: string }> {
  const file = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', passphrase, '-C', 'a comment', '-f', file]);
  return { priv: await readFile(file, 'utf8'), pub: (await readFile(`${file}.pub`, 'utf8')).trim() };
}

describe('OpenSSH key reading without an SSH library', () => {
  it('gives the same public key as ssh-keygen and as ssh2 for ed25519, ecdsa and rsa keys', async () => {
    for (const type of ['ed25519', 'ecdsa', 'rsa']) {
      const { priv, pub } = await keygen(`k-${type}`, type);
      const key = publicKeyOfPrivate(priv);
      expect(key).toBeDefined();
      const line = publicKeyLine(key!);
      expect(line).toBe(pub.split(' ').slice(0, 2).join(' '));
      const viaSsh2 = ssh2.utils.parseKey(priv);
      if (viaSsh2 instanceof Error) throw viaSsh2;
      expect(line).toBe(`${viaSsh2.type} ${viaSsh2.getPublicSSH().toString('base64')}`);
      expect(parsePublicKeyLine(pub)).toEqual(key);
    }
  });

  it('refuses encrypted, damaged and foreign private keys', async () => {
    const { priv } = await keygen('k-locked', 'ed25519', 'secret passphrase');
    expect(publicKeyOfPrivate(priv)).toBeUndefined();
    const { priv: good } = await keygen('k-good', 'ed25519');
    const lines = good.trim().split('\n');
    expect(publicKeyOfPrivate([lines[0], ...lines.slice(1, 3), lines.at(-1)].join('\n'))).toBeUndefined(); // truncated
    expect(publicKeyOfPrivate(good.replace('OPENSSH PRIVATE KEY', 'RSA PRIVATE KEY'))).toBeUndefined();
    expect(publicKeyOfPrivate('not a key\n')).toBeUndefined();
    expect(publicKeyOfPrivate('')).toBeUndefined();
    // A changed first check word of the private section (after the magic, the none/none/empty kdf fields,
    // the key count, the 51-byte ed25519 public blob and the section's length: byte 98) no longer matches the second.
    const body = Buffer.from(lines.slice(1, -1).join(''), 'base64');
    expect(publicKeyOfPrivate(`${lines[0]}\n${body.toString('base64')}\n${lines.at(-1)}\n`)).toBeDefined();
    body[98] ^= 0xff;
    expect(publicKeyOfPrivate(`${lines[0]}\n${body.toString('base64')}\n${lines.at(-1)}\n`)).toBeUndefined();
  });

  it('refuses public key lines whose blob does not match their type', async () => {
    const { pub } = await keygen('k-pub', 'ed25519');
    const [, base64] = pub.split(' ');
    expect(parsePublicKeyLine(`ssh-rsa ${base64}`)).toBeUndefined();
    expect(parsePublicKeyLine('ssh-ed25519 !!!')).toBeUndefined();
    expect(parsePublicKeyLine('ssh-ed25519')).toBeUndefined();
    expect(parsePublicKeyLine(`ssh-ed25519 ${base64.slice(0, 10)}`)).toBeUndefined();
    expect(parsePublicKeyLine(`ssh-ed25519 ${base64} comment words`)?.type).toBe('ssh-ed25519');
  });
});

describe('making ed25519 keys without ssh-keygen', () => {
  it('writes keys OpenSSH loads and signs with, whose public half it derives the same', async () => {
    // Enough keys that some have a leading zero byte in a half (one in 128 per key).
    const keys = Array.from({ length: 300 }, (_, i) => generateEd25519(`key ${i}`));
    for (const key of keys) {
      expect(publicKeyLine(publicKeyOfPrivate(key.privateKey)!)).toBe(key.publicKey);
      expect(key.privateKey.split('\n').every((l) => l.length <= 70 || l.startsWith('-----'))).toBe(true);
    }
    for (const [i, key] of keys.slice(0, 12).entries()) {
      const file = join(dir, `made-${i}`);
      await writeFile(file, key.privateKey, { mode: 0o600 });
      // ssh-keygen reads the private key and prints the public half and the comment it holds.
      expect(execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' }).trim()).toBe(`${key.publicKey} key ${i}`);
      // A signature made with the private half verifies under the public half: the two belong together.
      await writeFile(join(dir, 'message'), `message ${i}\n`);
      execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-n', 'envbox-test', '-f', file, join(dir, 'message')]);
      await writeFile(join(dir, 'allowed'), `signer ${key.publicKey}\n`);
      const verified = execFileSync(
        'ssh-keygen',
        ['-Y', 'verify', '-n', 'envbox-test', '-f', join(dir, 'allowed'), '-I', 'signer', '-s', join(dir, 'message.sig')],
        { input: `message ${i}\n`, encoding: 'utf8' },
      );
      expect(verified).toContain('Good "envbox-test" signature for signer');
      await rm(join(dir, 'message.sig'));
    }
  });
});
