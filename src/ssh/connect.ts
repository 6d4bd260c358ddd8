import { connect as tcpConnect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import ssh2, { type Algorithms, type Client, type ParsedKey, type PublicKeyAuthMethod } from 'ssh2';
import { EnvboxError } from '../util/errors.js';
import { knownHostsName, pinnedHostVerifier, readPinnedKeys, type HostTarget, type PinnedKey } from './known-hosts.js';

export interface ConnectOptions {
  host: string;
  port?: number;
  username: string;
  /** The env's private key (file contents, not a path). */
  privateKey: string | Buffer;
  knownHostsFile: string;
  /** Look the pinned key up by this name (`envbox-<id>`) instead of the address. */
  hostAlias?: string;
  /** The env as the user knows it, for messages; defaults to the alias without `envbox-`. */
  envName?: string;
  /** Overall budget for every attempt together. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Failures that mean "the guest or its sshd is not up yet": worth another try until the budget runs out. */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'ECONNABORTED', 'EPIPE',
]);
/**
 * A local guest's sshd comes up within a second or two of boot, and a refused connect costs well under a
 * millisecond, so poll briskly through that window; after it, back off to spare slow or remote hosts.
 */
const BRISK_PHASE_MS = 2000;
const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 500;
/**
 * sshd sends its version line as soon as it accepts. A connection that stays silent is one nobody will
 * answer yet: QEMU's user network accepts on the host port before the guest listens, and its connection
 * into a guest that is still booting waits on SYN retries. Such an attempt is given up after this long
 * (a second longer each time, for a slow guest, up to the cap) instead of waiting out the whole login
 * budget; a short cap keeps the wait after sshd comes up short too.
 */
const FIRST_SILENCE_MS = 2_000;
const MAX_SILENCE_MS = 5_000;

/** Why a connected client's link dropped, for messages after the fact (ssh2 emits 'error' then 'close'). */
const lostReasons = new WeakMap<Client, Error>();

export function connectionError(client: Client): Error | undefined {
  return lostReasons.get(client);
}

/**
 * Logs in to a guest with the env key, checking its host key against the pinned one. Retries while the
 * guest is still booting; a wrong host key or a refused key fails at once, since waiting cannot fix either.
 * The returned client keeps an 'error' listener, so a dropped link shows up as 'close', never as a crash.
 */
export async function connect(opts: ConnectOptions): Promise<Client> {
  const port = opts.port ?? 22;
  const target: HostTarget = {
    env: opts.envName ?? opts.hostAlias?.replace(/^envbox-/, '') ?? opts.host,
    host: opts.host,
    port,
  };
  const pinned = await readPinnedKeys(opts.knownHostsFile, opts.hostAlias ?? knownHostsName(opts.host, port));
  const key = ssh2.utils.parseKey(opts.privateKey);
  if (key instanceof Error || !key.isPrivateKey()) {
    throw new EnvboxError('SSH_KEY_INVALID', `the SSH key of env "${target.env}" cannot be read`, {
      hint: 'run `env destroy && env up` to recreate the env with a new key',
    });
  }
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  let backoff = FIRST_BACKOFF_MS;
  let silence = FIRST_SILENCE_MS;
  let lastReason: string | undefined;
  for (;;) {
    opts.signal?.throwIfAborted();
    const outcome = await attempt(opts, target, pinned, key, Math.max(1, deadline - Date.now()), silence);
    if ('client' in outcome) return outcome.client;
    if (outcome.silent) silence = Math.min(silence + 1_000, MAX_SILENCE_MS);
    if (!outcome.cutShort || lastReason === undefined) lastReason = outcome.reason;
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      await sleep(Math.min(backoff, left), undefined, { signal: opts.signal });
    } catch {
      opts.signal?.throwIfAborted();
    }
    if (Date.now() - started > BRISK_PHASE_MS) backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }
  throw new EnvboxError(
    'SSH_TIMEOUT',
    `could not log in to env "${target.env}" at ${opts.host}:${port} within ${formatSeconds(opts.timeoutMs)} ` +
      `(last: ${lastReason})`,
    { hint: 'check that the guest is running (`env status`) and that its sshd started (`env logs`)' },
  );
}

/** `cutShort`: the attempt was stopped by the overall deadline, which says less than what failed before it. */
type Outcome = { client: Client } | { reason: string; cutShort?: boolean; silent?: boolean };

/** One TCP connection and handshake: a client, a reason worth retrying, or a rejection when retrying is pointless. */
function attempt(
  opts: ConnectOptions,
  target: HostTarget,
  pinned: PinnedKey[],
  key: ParsedKey,
  readyTimeout: number,
  silenceMs: number,
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const verifier = pinnedHostVerifier(pinned, target);
    const client = new ssh2.Client();
    // ssh2 leaves Nagle on; with it, each small interactive write waits for the previous ACK.
    const sock = tcpConnect({ host: opts.host, port: target.port, noDelay: true, keepAlive: true });
    let banner = '';
    let settled = false;
    // Nothing from the far end (not even sshd's version line) within silenceMs: give this connection up.
    // (Read from the socket's byte count: a listener of our own would take bytes before ssh2 listens.)
    const silent =
      silenceMs < readyTimeout
        ? setTimeout(() => {
            if (sock.bytesRead === 0) settle({ reason: `no answer from sshd within ${formatSeconds(silenceMs)} of connecting`, silent: true });
          }, silenceMs)
        : undefined;
    const settle = (outcome: Outcome | { fail: unknown }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(silent);
      opts.signal?.removeEventListener('abort', onAbort);
      client.removeListener('ready', onReady).removeListener('error', onError).removeListener('close', onClose);
      if ('client' in outcome) {
        client.on('error', (err: Error) => lostReasons.set(client, err));
        resolve(outcome);
        return;
      }
      client.on('error', () => {}); // late errors of an abandoned attempt have nobody to tell
      client.destroy();
      sock.destroy();
      if ('fail' in outcome) reject(outcome.fail);
      else resolve(outcome);
    };
    const onReady = () => settle({ client });
    const onError = (err: Error & { level?: string; code?: string | number }) =>
      settle(classify(err, verifier.rejection(), target, opts.username));
    const onClose = () =>
      settle({ reason: `the guest closed the connection during login${banner ? `: ${banner.trim()}` : ''}` });
    const onAbort = () => settle({ fail: opts.signal!.reason });
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    // During boot pam_nologin sends "System is booting up…" as a banner and then drops the connection.
    client.on('banner', (message: string) => (banner = message));
    // Only the env key: no "none"/password round trips before the one method that can work.
    const auth: PublicKeyAuthMethod = { type: 'publickey', username: opts.username, key };
    client.on('ready', onReady).on('error', onError).on('close', onClose);
    client.connect({
      sock,
      username: opts.username,
      authHandler: [auth],
      hostVerifier: verifier.verify,
      readyTimeout,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      algorithms: algorithmsFor(pinned),
    });
  });
}

function classify(
  err: Error & { level?: string; code?: string | number },
  hostKeyRefusal: EnvboxError | undefined,
  target: HostTarget,
  username: string,
): Outcome | { fail: EnvboxError } {
  if (hostKeyRefusal) return { fail: hostKeyRefusal };
  if (err.level === 'client-authentication') {
    const message = `the guest of env "${target.env}" refused the env's SSH key for user "${username}"`;
    return {
      fail: new EnvboxError('SSH_AUTH_FAILED', message, {
        hint:
          "the guest's ~/.ssh/authorized_keys no longer holds the env key (envbox@<id>); put it back from the env's " +
          'id_ed25519.pub, or run `env destroy && env up` to recreate the guest',
      }),
    };
  }
  if (typeof err.code === 'string' && TRANSIENT_CODES.has(err.code)) return { reason: err.message };
  if (err.level === 'client-timeout') return { reason: err.message, cutShort: true };
  if (/lost before handshake/i.test(err.message)) return { reason: err.message };
  const message = `cannot connect to env "${target.env}" at ${target.host}:${target.port}: ${err.message}`;
  return {
    fail: new EnvboxError('SSH_CONNECT_FAILED', message, {
      hint: "check the guest's sshd (`env logs`); if this persists, `env reload` restarts the guest",
      cause: err,
    }),
  };
}

/**
 * Offer only what is fast and what our guests' OpenSSH has: curve25519 key exchange, AES-GCM (AES-NI) before
 * ChaCha20, no compression. Host key types are restricted to the pinned ones, so an sshd holding several
 * keys presents the pinned one instead of a different (and therefore "mismatching") type.
 */
function algorithmsFor(pinned: PinnedKey[]): Algorithms {
  const hostKeyTypes = pinned.flatMap((p) =>
    p.type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [p.type],
  );
  return {
    kex: ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'ecdh-sha2-nistp256'],
    cipher: ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr'],
    hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-256'],
    serverHostKey: [...new Set(hostKeyTypes)] as Algorithms['serverHostKey'],
    compress: ['none'],
  };
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))}s`;
}
