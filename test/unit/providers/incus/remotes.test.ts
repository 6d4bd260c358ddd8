import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { IncusApi } from '../../../../src/providers/incus/api.js';
import {
  addRemote,
  checkRemoteName,
  clientCertificate,
  findRemote,
  listRemotes,
  normalizeRemoteUrl,
  parseTrustToken,
  removeRemote,
} from '../../../../src/providers/incus/remotes.js';
import { certFingerprint, normalizeFingerprint } from '../../../../src/providers/incus/transport.js';
import { EnvboxError } from '../../../../src/util/errors.js';
import { failure, sync } from './fake-daemon.js';

/**
 * The trust flow against a real TLS peer in this process: a fake daemon with its own self-signed
 * certificate that trusts a client certificate only after a POST /1.0/certificates with its token.
 */

let dir = '';
const certs: Record<'a' | 'b', { cert: string; key: string }> = { a: { cert: '', key: '' }, b: { cert: '', key: '' } };

function selfSigned(name: string): { cert: string; key: string } {
  const base = join(dir, name);
  // prettier-ignore
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${name}`, '-keyout', `${base}.key`, '-out', `${base}.crt`], { stdio: 'ignore' });
  return { cert: readFileSync(`${base}.crt`, 'utf8'), key: readFileSync(`${base}.key`, 'utf8') };
}

const token = (fingerprint: string, secret = 's3cret') =>
  Buffer.from(JSON.stringify({ client_name: 'laptop', fingerprint, addresses: ['127.0.0.1:8443'], secret, expires_at: '0001-01-01T00:00:00Z' })).toString('base64');

interface Fake {
  url: string;
  server: Server;
  trusted: Set<string>;
  seen: { method: string; path: string; body: string; client?: string }[];
}

let fake: Fake;

async function startFake(which: 'a' | 'b'): Promise<Fake> {
  const trusted = new Set<string>();
  const seen: Fake['seen'] = [];
  const server = createServer({ ...certs[which], requestCert: true, rejectUnauthorized: false }, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      const client = peer?.fingerprint256 ? normalizeFingerprint(peer.fingerprint256) : undefined;
      seen.push({ method: req.method!, path: req.url!, body, client });
      const send = (status: number, value: unknown) => res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(value));
      if (req.url === '/1.0') return send(200, sync({ auth: client && trusted.has(client) ? 'trusted' : 'untrusted', environment: { server: 'incus' } }));
      if (req.method === 'POST' && req.url === '/1.0/certificates') {
        const parsed = JSON.parse(body) as { trust_token?: string };
        if (parsed.trust_token && parseTrustToken(parsed.trust_token).secret === 's3cret' && client) {
          trusted.add(client);
          return send(200, sync({}));
        }
        return send(403, failure(403, 'No matching certificate add operation found'));
      }
      if (req.method === 'DELETE' && req.url?.startsWith('/1.0/certificates/') && client && trusted.has(client)) {
        trusted.delete(client);
        return send(200, sync({}));
      }
      send(404, failure(404, 'Not Found'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, server, trusted, seen };
}

const caught = async (p: Promise<unknown>): Promise<EnvboxError> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof EnvboxError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-remotes-'));
  certs.a = selfSigned('server-a');
  certs.b = selfSigned('server-b');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  process.env.XDG_CONFIG_HOME = await mkdtemp(join(dir, 'config-'));
  fake = await startFake('a');
});

afterEach(async () => {
  fake.server.closeAllConnections();
  await new Promise((resolve) => fake.server.close(resolve));
  delete process.env.XDG_CONFIG_HOME;
});

describe('env remote add / list / rm', () => {
  it('pins the server, gets envbox trusted with the token, and keeps secrets 0600', async () => {
    const remote = await addRemote('lab', fake.url, token(certFingerprint(certs.a.cert)));
    expect(remote).toMatchObject({ name: 'lab', url: fake.url, fingerprint: certFingerprint(certs.a.cert), server: 'incus' });
    const mine = (await clientCertificate()).fingerprint;
    expect(fake.trusted.has(mine)).toBe(true);
    const post = fake.seen.find((r) => r.method === 'POST')!;
    expect(JSON.parse(post.body)).toMatchObject({ type: 'client', name: 'laptop', trust_token: token(certFingerprint(certs.a.cert)) });
    for (const file of ['remotes.json', 'client.key', 'client.crt']) {
      expect((await stat(join(process.env.XDG_CONFIG_HOME!, 'envbox', file))).mode & 0o777).toBe(0o600);
    }
    expect((await listRemotes()).map((r) => r.name)).toEqual(['lab']);
    expect((await findRemote(fake.url)).name).toBe('lab');
  });

  it('refuses a server whose certificate is not the one the token names, before sending anything', async () => {
    const err = await caught(addRemote('lab', fake.url, token(certFingerprint(certs.b.cert))));
    expect(err.code).toBe('REMOTE_CERT_MISMATCH');
    expect(err.message).toContain(`presents certificate ${certFingerprint(certs.a.cert).slice(0, 16)}`);
    expect(fake.seen).toEqual([]);
    expect(await listRemotes()).toEqual([]);
  });

  it('says a refused token is used up or expired', async () => {
    const err = await caught(addRemote('lab', fake.url, token(certFingerprint(certs.a.cert), 'wrong')));
    expect(err.code).toBe('REMOTE_TOKEN_REFUSED');
    expect(err.message).toBe(`${fake.url} refused the trust token: No matching certificate add operation found`);
    expect(err.hint).toMatch(/incus config trust add NAME/);
    expect(await listRemotes()).toEqual([]);
  });

  it('fails the handshake when the server later presents another certificate', async () => {
    const remote = await addRemote('lab', fake.url, token(certFingerprint(certs.a.cert)));
    const { cert, key } = await clientCertificate();
    const api = new IncusApi({ kind: 'https', url: remote.url, clientCert: cert, clientKey: key, serverCert: certs.b.cert }, 'incus');
    const before = fake.seen.length;
    const err = await caught(api.get('/1.0', 'answering'));
    api.close();
    expect(err.code).toBe('INCUS_CERT_CHANGED');
    expect(err.hint).toMatch(/env remote rm NAME/);
    expect(fake.seen.length).toBe(before);
  });

  it('suggests the closest remote name, and rm forgets the remote and revokes envbox on the server', async () => {
    await addRemote('prod', fake.url, token(certFingerprint(certs.a.cert)));
    const err = await caught(findRemote('prd'));
    expect(err.message).toBe('no remote named "prd" — did you mean "prod"?');
    expect(err.exit).toBe(2);
    const { revoked } = await removeRemote('prod');
    expect(revoked).toBe(true);
    expect(fake.trusted.size).toBe(0);
    expect(await listRemotes()).toEqual([]);
    expect(JSON.parse(await readFile(join(process.env.XDG_CONFIG_HOME!, 'envbox', 'remotes.json'), 'utf8'))).toEqual({ remotes: {} });
  });
});

describe('remote names, URLs and tokens', () => {
  it.each([
    ['incus.example.com', 'https://incus.example.com:8443'],
    ['10.0.0.5:9443', 'https://10.0.0.5:9443'],
    ['https://[::1]', 'https://[::1]:8443'],
    ['https://h.example:8443/', 'https://h.example:8443'],
  ])('normalizes %s', (input, url) => expect(normalizeRemoteUrl(input)).toBe(url));

  it.each(['http://h:8443', 'https://h:8443/path', 'https://user@h', 'ftp://h'])('rejects %s', (input) => {
    expect(() => normalizeRemoteUrl(input)).toThrow(/https server address/);
  });

  it('checks names', () => {
    expect(checkRemoteName('build-1')).toBe('build-1');
    expect(() => checkRemoteName('Prod/1')).toThrow(/not a remote name/);
  });

  it('reads an Incus token and rejects anything else', () => {
    const fp = 'AB'.repeat(32);
    expect(parseTrustToken(token(fp))).toMatchObject({ client_name: 'laptop', fingerprint: 'ab'.repeat(32), addresses: ['127.0.0.1:8443'] });
    expect(() => parseTrustToken('not-a-token')).toThrow(/not an Incus\/LXD trust token/);
    expect(() => parseTrustToken(Buffer.from('{"fingerprint":"x","secret":"y"}').toString('base64'))).toThrow(/trust token/);
  });
});
