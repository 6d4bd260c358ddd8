import { createHash, X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import { EnvboxError } from '../../util/errors.js';

/**
 * How envbox reaches an Incus/LXD daemon: its local unix socket, or HTTPS with envbox's client
 * certificate and the server certificate pinned when the remote was added. The server certificate is
 * the only CA trusted for that connection and its fingerprint must match exactly, so a different
 * certificate fails the TLS handshake before any request (or token) is sent.
 */
export type Endpoint =
  | { kind: 'unix'; socket: string }
  | { kind: 'https'; url: string; clientCert: string; clientKey: string; serverCert: string };

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: string | Buffer | Readable;
  timeoutMs?: number;
}

/** SHA-256 of a certificate's DER bytes, lowercase hex: the fingerprint `incus config trust list` shows. */
export function certFingerprint(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

/** `AB:CD:…` (Node, OpenSSL) or plain hex, in either case, to plain lowercase hex. */
export function normalizeFingerprint(text: string): string {
  return text.replace(/:/g, '').toLowerCase();
}

export function describeEndpoint(endpoint: Endpoint): string {
  return endpoint.kind === 'unix' ? endpoint.socket : endpoint.url;
}

/** The group whose members may use the daemon's local socket. */
export const adminGroup = (flavor: 'incus' | 'lxd') => (flavor === 'incus' ? 'incus-admin' : 'lxd');
/** The daemon's own client command (LXD's is `lxc`) and how a fresh daemon is initialised. */
export const clientCommand = (flavor: 'incus' | 'lxd') => (flavor === 'incus' ? 'incus' : 'lxc');
export const initCommand = (flavor: 'incus' | 'lxd') => (flavor === 'incus' ? 'incus admin init' : 'lxd init');

/** What went wrong below HTTP (socket missing, refused, certificate), said as what to do about it. */
export function transportError(endpoint: Endpoint, err: NodeJS.ErrnoException, flavor: 'incus' | 'lxd' = 'incus'): EnvboxError {
  const where = describeEndpoint(endpoint);
  if (endpoint.kind === 'unix') {
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      return new EnvboxError('INCUS_DOWN', `no daemon answers on ${where}`, {
        hint:
          flavor === 'incus'
            ? `start it (systemctl start incus, or incusd --group incus-admin &); on a fresh host run ${initCommand(flavor)}`
            : `start it (snap start lxd, or systemctl start lxd); on a fresh host run ${initCommand(flavor)}`,
        cause: err,
      });
    }
    if (err.code === 'EACCES') {
      return new EnvboxError('INCUS_FORBIDDEN', `no permission to use ${where}`, {
        hint: `add yourself to the ${adminGroup(flavor)} group (then log in again), or run env as root`,
        cause: err,
      });
    }
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|fingerprint/i.test(`${err.code ?? ''} ${err.message}`)) {
    return new EnvboxError('INCUS_CERT_CHANGED', `the server at ${where} no longer presents the certificate pinned for it`, {
      hint: 'if the server was reinstalled, env remote rm NAME and env remote add it again with a new token; otherwise someone may be in between',
      cause: err,
    });
  }
  if (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENOTFOUND' || err.code === 'ETIMEDOUT') {
    return new EnvboxError('INCUS_UNREACHABLE', `cannot reach ${where} (${err.code})`, {
      hint: 'check the URL and that the server listens there (incus config set core.https_address ADDRESS:8443)',
      cause: err,
    });
  }
  return new EnvboxError('INCUS_CONNECTION', `talking to ${where} failed: ${err.message}`, { cause: err });
}

/** One daemon connection pool. Requests reuse sockets (keep-alive); idle sockets never hold the process open. */
export class Transport {
  private readonly agent: http.Agent;
  private readonly base: { host?: string; port?: number; socketPath?: string };

  constructor(
    readonly endpoint: Endpoint,
    private readonly flavor: 'incus' | 'lxd' = 'incus',
  ) {
    if (endpoint.kind === 'unix') {
      this.agent = new http.Agent({ keepAlive: true });
      this.base = { socketPath: endpoint.socket };
      return;
    }
    const url = new URL(endpoint.url);
    const pinned = certFingerprint(endpoint.serverCert);
    this.base = { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 8443) };
    this.agent = new https.Agent({
      keepAlive: true,
      cert: endpoint.clientCert,
      key: endpoint.clientKey,
      ca: endpoint.serverCert,
      // The pinned certificate stands for the server whatever name or address the URL uses.
      checkServerIdentity: (_host, cert) =>
        normalizeFingerprint(cert.fingerprint256) === pinned ? undefined : new Error(`certificate fingerprint ${cert.fingerprint256} is not the pinned one`),
    });
  }

  request(method: string, path: string, opts: RequestOptions = {}): Promise<Reply> {
    const lib = this.endpoint.kind === 'unix' ? http : https;
    return new Promise((resolve, reject) => {
      const req = lib.request({ ...this.base, agent: this.agent, method, path, headers: opts.headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(transportError(this.endpoint, err, this.flavor)));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', (err: NodeJS.ErrnoException) => reject(transportError(this.endpoint, err, this.flavor)));
      if (opts.timeoutMs) {
        req.setTimeout(opts.timeoutMs, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      }
      const body = opts.body;
      if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) {
        req.end(body);
        return;
      }
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * The certificate a server presents, without trusting it (first contact: `env remote add` checks it
 * against the fingerprint inside the trust token before sending anything).
 */
export function fetchServerCertificate(url: string, timeoutMs = 10_000): Promise<{ pem: string; fingerprint: string }> {
  const u = new URL(url);
  const endpoint: Endpoint = { kind: 'https', url, clientCert: '', clientKey: '', serverCert: '' };
  return new Promise((resolve, reject) => {
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const socket = tls.connect({ host, port: Number(u.port || 8443), rejectUnauthorized: false, servername: isIP(host) ? undefined : host });
    socket.setTimeout(timeoutMs, () => socket.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    socket.once('error', (err: NodeJS.ErrnoException) => reject(transportError(endpoint, err)));
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      if (!cert?.raw) {
        reject(new EnvboxError('INCUS_NO_CERT', `${url} presented no certificate`, { hint: 'is this an Incus or LXD server?' }));
        return;
      }
      const pem = `-----BEGIN CERTIFICATE-----\n${cert.raw.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd()}\n-----END CERTIFICATE-----\n`;
      resolve({ pem, fingerprint: normalizeFingerprint(cert.fingerprint256) });
    });
  });
}
