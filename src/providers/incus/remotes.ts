import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../ssh/atomic.js';
import { EnvboxError, UsageError } from '../../util/errors.js';
import { runOk } from '../../util/exec.js';
import { configHome } from '../../util/paths.js';
import { closest } from '../../util/suggest.js';
import { IncusApi, type Flavor } from './api.js';
import { certFingerprint, fetchServerCertificate, normalizeFingerprint } from './transport.js';

/**
 * Remote Incus/LXD daemons envbox may use (`env remote add`), kept in the config dir with envbox's
 * own client certificate (both 0600). Each remote pins the server certificate it presented when it
 * was added, checked against the fingerprint inside the trust token the server's admin made.
 */

export interface Remote {
  name: string;
  /** https://host:port */
  url: string;
  /** SHA-256 of the server certificate (lowercase hex). */
  fingerprint: string;
  /** The pinned server certificate (PEM): the only one trusted for this remote. */
  certificate: string;
  server: Flavor;
  added: string;
}

interface RemotesFile {
  remotes: Record<string, Remote>;
}

/** What `incus config trust add NAME` hands out: base64 JSON naming the server by its certificate. */
export interface TrustToken {
  client_name: string;
  fingerprint: string;
  addresses: string[];
  secret: string;
  expires_at?: string;
}

const remotesFile = () => join(configHome(), 'remotes.json');
export const clientCertFile = () => join(configHome(), 'client.crt');
export const clientKeyFile = () => join(configHome(), 'client.key');

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function checkRemoteName(name: string): string {
  if (!NAME.test(name)) {
    throw new UsageError('REMOTE_NAME', `${JSON.stringify(name)} is not a remote name`, {
      hint: 'use lowercase letters, digits, - and _ (like prod or build-1)',
    });
  }
  return name;
}

/** `host`, `host:port` or `https://host[:port]` as `https://host:port` (8443 by default). */
export function normalizeRemoteUrl(text: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError('REMOTE_URL', `${JSON.stringify(text)} is not a server address`, { hint: 'write it like https://incus.example.com:8443' });
  }
  if (url.protocol !== 'https:' || !url.hostname || (url.pathname !== '/' && url.pathname !== '') || url.search || url.username) {
    throw new UsageError('REMOTE_URL', `${JSON.stringify(text)} is not an https server address`, {
      hint: 'Incus and LXD serve their API over https: write it like https://incus.example.com:8443',
    });
  }
  return `https://${url.hostname}:${url.port || '8443'}`;
}

export function parseTrustToken(token: string): TrustToken {
  let parsed: Partial<TrustToken> | undefined;
  try {
    parsed = JSON.parse(Buffer.from(token.trim(), 'base64').toString('utf8')) as Partial<TrustToken>;
  } catch {
    parsed = undefined;
  }
  if (!parsed || typeof parsed.fingerprint !== 'string' || typeof parsed.secret !== 'string' || !/^[0-9a-f:]{64,95}$/i.test(parsed.fingerprint)) {
    throw new UsageError('REMOTE_TOKEN', 'that is not an Incus/LXD trust token', {
      hint: 'make one on the server with incus config trust add NAME (or lxc config trust add NAME) and paste the whole line',
    });
  }
  return {
    client_name: String(parsed.client_name ?? ''),
    fingerprint: normalizeFingerprint(parsed.fingerprint),
    addresses: Array.isArray(parsed.addresses) ? parsed.addresses.map(String) : [],
    secret: parsed.secret,
    expires_at: parsed.expires_at,
  };
}

async function readRemotes(): Promise<RemotesFile> {
  try {
    const data = JSON.parse(await readFile(remotesFile(), 'utf8')) as Partial<RemotesFile>;
    return { remotes: data.remotes ?? {} };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { remotes: {} };
    throw new EnvboxError('REMOTES_FILE', `${remotesFile()} is damaged: ${(err as Error).message}`, { hint: 'fix or remove it, then add the remotes again' });
  }
}

async function writeRemotes(data: RemotesFile): Promise<void> {
  await mkdir(configHome(), { recursive: true, mode: 0o700 });
  await writeFileAtomic(remotesFile(), `${JSON.stringify(data, null, 2)}\n`, 0o600);
}

export async function listRemotes(): Promise<Remote[]> {
  return Object.values((await readRemotes()).remotes).sort((a, b) => a.name.localeCompare(b.name));
}

/** The remote a name (or an added URL) stands for, with a did-you-mean when there is none. */
export async function findRemote(nameOrUrl: string): Promise<Remote> {
  const remotes = await listRemotes();
  const byUrl = /^https:\/\//.test(nameOrUrl) ? remotes.find((r) => r.url === normalizeRemoteUrl(nameOrUrl)) : undefined;
  const found = byUrl ?? remotes.find((r) => r.name === nameOrUrl);
  if (found) return found;
  if (/^https:\/\//.test(nameOrUrl)) {
    throw new UsageError('REMOTE_UNKNOWN', `envbox has no certificate for ${nameOrUrl}`, {
      hint: `add it first: env remote add NAME ${nameOrUrl} --token TOKEN (token from incus config trust add NAME on the server)`,
    });
  }
  const guess = closest(nameOrUrl, remotes.map((r) => r.name));
  throw new UsageError('REMOTE_UNKNOWN', `no remote named ${JSON.stringify(nameOrUrl)}${guess ? ` — did you mean ${JSON.stringify(guess)}?` : ''}`, {
    hint: remotes.length ? `known remotes: ${remotes.map((r) => r.name).join(', ')} (env remote list)` : 'add one with env remote add NAME URL --token TOKEN',
  });
}

/** envbox's client certificate and key, made on first use (EC P-384, like the incus client's). */
export async function clientCertificate(): Promise<{ cert: string; key: string; fingerprint: string }> {
  const [cert, key] = await Promise.all([readFile(clientCertFile(), 'utf8').catch(() => ''), readFile(clientKeyFile(), 'utf8').catch(() => '')]);
  if (cert && key) return { cert, key, fingerprint: certFingerprint(cert) };
  await mkdir(configHome(), { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(tmpdir(), 'envbox-cert-'));
  try {
    // prettier-ignore
    await runOk('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp384r1', '-sha384', '-nodes', '-days', '3650',
      '-subj', `/CN=envbox@${hostname().replace(/[^\w.-]/g, '-')}`, '-addext', 'extendedKeyUsage=clientAuth',
      '-keyout', join(dir, 'key'), '-out', join(dir, 'crt'),
    ], { code: 'CLIENT_CERT', what: 'making the client certificate', hint: 'apt-get install openssl' });
    const made = { cert: await readFile(join(dir, 'crt'), 'utf8'), key: await readFile(join(dir, 'key'), 'utf8') };
    await writeFileAtomic(clientKeyFile(), made.key, 0o600);
    await writeFileAtomic(clientCertFile(), made.cert, 0o600);
    return { ...made, fingerprint: certFingerprint(made.cert) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** An API client for a remote, authenticated by envbox's certificate against the pinned server one. */
export async function remoteApi(remote: Pick<Remote, 'url' | 'certificate' | 'server'>): Promise<IncusApi> {
  const { cert, key } = await clientCertificate();
  return new IncusApi({ kind: 'https', url: remote.url, clientCert: cert, clientKey: key, serverCert: remote.certificate }, remote.server);
}

/**
 * `env remote add`: checks the server's certificate against the token, has the server trust envbox's
 * certificate with the token, checks it now answers as trusted, and saves the remote.
 */
export async function addRemote(name: string, urlText: string, tokenText: string): Promise<Remote> {
  checkRemoteName(name);
  const url = normalizeRemoteUrl(urlText);
  const token = parseTrustToken(tokenText);
  const data = await readRemotes();
  if (data.remotes[name]) {
    throw new UsageError('REMOTE_EXISTS', `remote ${name} already exists (${data.remotes[name]!.url})`, { hint: `env remote rm ${name} first to replace it` });
  }
  const server = await fetchServerCertificate(url);
  if (server.fingerprint !== token.fingerprint) {
    throw new EnvboxError('REMOTE_CERT_MISMATCH', `${url} presents certificate ${server.fingerprint.slice(0, 16)}…, but the token was made by server ${token.fingerprint.slice(0, 16)}…`, {
      hint: `check the URL (the token names ${token.addresses.join(', ') || 'no address'}); if it is right, something is between you and the server`,
    });
  }
  const probe = { url, certificate: server.pem, server: 'incus' as Flavor };
  let api = await remoteApi(probe);
  try {
    const info = await api.get<{ auth: string; environment?: { server?: string } }>('/1.0', 'answering');
    if (info.auth !== 'trusted') {
      const reply = await api.raw('POST', '/1.0/certificates', {
        headers: { 'Content-Type': 'application/json' },
        // Incus reads trust_token; LXD 5.0 took the same token as the password.
        body: JSON.stringify({ type: 'client', name: token.client_name || undefined, trust_token: tokenText.trim(), password: tokenText.trim() }),
      });
      if (reply.status >= 400) {
        const message = (JSON.parse(reply.body.toString('utf8') || '{}') as { error?: string }).error ?? `HTTP ${reply.status}`;
        throw new EnvboxError('REMOTE_TOKEN_REFUSED', `${url} refused the trust token: ${message}`, {
          hint: 'tokens work once and may expire: make a new one on the server with incus config trust add NAME',
        });
      }
    }
    api.close();
    const flavor: Flavor = info.environment?.server === 'lxd' ? 'lxd' : 'incus';
    api = await remoteApi({ ...probe, server: flavor });
    const after = await api.get<{ auth: string }>('/1.0', 'answering');
    if (after.auth !== 'trusted') {
      throw new EnvboxError('REMOTE_NOT_TRUSTED', `${url} took the token but still does not trust envbox's certificate`, {
        hint: 'on the server, incus config trust list should show it; try a new token',
      });
    }
    const remote: Remote = { name, url, fingerprint: server.fingerprint, certificate: server.pem, server: flavor, added: new Date().toISOString() };
    data.remotes[name] = remote;
    await writeRemotes(data);
    return remote;
  } finally {
    api.close();
  }
}

/** `env remote rm`: forgets the remote and asks the server to drop envbox's certificate (best effort). */
export async function removeRemote(name: string): Promise<{ remote: Remote; revoked: boolean }> {
  const remote = await findRemote(name);
  let revoked = false;
  const api = await remoteApi(remote);
  try {
    const { fingerprint } = await clientCertificate();
    const others = Object.values((await readRemotes()).remotes).some((r) => r.name !== remote.name && r.url === remote.url);
    if (!others) revoked = (await api.raw('DELETE', `/1.0/certificates/${fingerprint}`, { timeoutMs: 10_000 })).status < 400;
  } catch {
    revoked = false;
  } finally {
    api.close();
  }
  const data = await readRemotes();
  delete data.remotes[remote.name];
  await writeRemotes(data);
  return { remote, revoked };
}
