import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fingerprint,
  generateHostKey,
  knownHostsName,
  parseKnownHosts,
  pinnedHostVerifier,
  readPinnedKeys,
  writeKnownHosts,
  type HostKey,
} from '../../../src/ssh/index.js';
import { run, runOk } from '../../../src/util/exec.js';

let dir: string;
let key: HostKey;
const blob = (line: string) => Buffer.from(line.split(' ')[1]!, 'base64');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-known-hosts-'));
  key = await generateHostKey();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('known_hosts file', () => {
  it('names the address and the alias on one line OpenSSH finds under both', async () => {
    const file = join(dir, 'known_hosts');
    await writeKnownHosts(file, { publicKey: `${key.publicKey} root@old`, address: '10.0.3.5', port: 2222, alias: 'envbox-web-1a' });
    expect(await readFile(file, 'utf8')).toBe(`envbox-web-1a,[10.0.3.5]:2222 ${key.publicKey}\n`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    for (const name of ['envbox-web-1a', '[10.0.3.5]:2222']) {
      expect((await runOk('ssh-keygen', ['-F', name, '-f', file])).stdout).toContain(key.publicKey);
    }
    expect((await run('ssh-keygen', ['-F', '10.0.3.5', '-f', file])).stdout).toBe('');
  });

  it('reads back the pinned key by either name and refuses to go on without one', async () => {
    const file = join(dir, 'read');
    await writeKnownHosts(file, { publicKey: key.publicKey, address: '10.0.3.5', alias: 'envbox-web-1a' });
    const expected = [{ type: 'ssh-ed25519', blob: blob(key.publicKey) }];
    expect(await readPinnedKeys(file, 'envbox-web-1a')).toEqual(expected);
    expect(await readPinnedKeys(file, knownHostsName('10.0.3.5', 22))).toEqual(expected);
    await expect(readPinnedKeys(file, 'envbox-other')).rejects.toMatchObject({ code: 'HOSTKEY_NOT_PINNED' });
    await expect(readPinnedKeys(join(dir, 'missing'), 'envbox-web-1a')).rejects.toMatchObject({ code: 'HOSTKEY_NOT_PINNED' });
  });

  it('skips comments, markers, hashed entries and other hosts', () => {
    const text = [
      '# envbox-a ssh-ed25519 AAAA',
      '@cert-authority envbox-a ssh-ed25519 AAAB',
      '|1|salt=|hash= ssh-ed25519 AAAC',
      'envbox-b ssh-ed25519 AAAD',
      '',
      '  envbox-b,envbox-a  ssh-ed25519   AAAE  comment',
    ].join('\n');
    expect(parseKnownHosts(text, 'envbox-a')).toEqual([{ type: 'ssh-ed25519', blob: Buffer.from('AAAE', 'base64') }]);
  });

  it('refuses names that would break the line', async () => {
    const pin = { publicKey: key.publicKey, address: '10.0.3.5' };
    await expect(writeKnownHosts(join(dir, 'x'), { ...pin, alias: 'a b' })).rejects.toMatchObject({ code: 'HOSTKEY_INVALID' });
    await expect(writeKnownHosts(join(dir, 'x'), { ...pin, alias: 'a\nb' })).rejects.toMatchObject({ code: 'HOSTKEY_INVALID' });
    await expect(writeKnownHosts(join(dir, 'x'), { ...pin, publicKey: 'ssh-ed25519 nope', alias: 'a' })).rejects.toMatchObject({
      code: 'HOSTKEY_INVALID',
    });
  });
});

describe('fingerprint', () => {
  it('matches what ssh-keygen prints', async () => {
    const file = join(dir, 'key.pub');
    await writeFile(file, `${key.publicKey}\n`);
    const printed = (await runOk('ssh-keygen', ['-l', '-E', 'sha256', '-f', file])).stdout.split(' ')[1];
    expect(fingerprint(blob(key.publicKey))).toBe(printed);
  });
});

describe('pinnedHostVerifier', () => {
  const target = { env: 'web-1a', host: '10.0.3.5', port: 22 };

  it('accepts the pinned key', () => {
    const verifier = pinnedHostVerifier([{ type: 'ssh-ed25519', blob: blob(key.publicKey) }], target);
    expect(verifier.verify(blob(key.publicKey))).toBe(true);
    expect(verifier.rejection()).toBeUndefined();
  });

  it('refuses any other key, explaining with both fingerprints what to do', async () => {
    const other = await generateHostKey();
    const verifier = pinnedHostVerifier([{ type: 'ssh-ed25519', blob: blob(key.publicKey) }], target);
    expect(verifier.verify(blob(other.publicKey))).toBe(false);
    expect(verifier.verify(blob(key.publicKey).subarray(0, 20))).toBe(false);
    const err = verifier.rejection()!;
    expect(err.code).toBe('HOSTKEY_MISMATCH');
    expect(err.message).toBe(
      'the guest of env "web-1a" at 10.0.3.5:22 presented a host key that is not the one pinned when the env was created\n' +
        `  pinned:    ${fingerprint(blob(key.publicKey))} (ssh-ed25519)\n` +
        `  presented: ${fingerprint(blob(key.publicKey).subarray(0, 20))} (ssh-ed25519)`,
    );
    expect(err.hint).toContain('run `env destroy && env up`');
    expect(err.hint).toContain('someone may be intercepting the connection');
  });
});
