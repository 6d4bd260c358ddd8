/**
 * Dialing through the SSH connection (a `direct-tcpip` channel, what `ssh -L` and `ssh -D` use):
 * the guest's sshd opens the connection, so guest-localhost works, and a host name is resolved by
 * the guest's resolver (its /etc/hosts and DNS), never the host's.
 */
import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import { DialError, type DialErrorKind } from './socks/dial.js';

// RFC 4254 §5.1 channel-open failure reasons.
const ADMINISTRATIVELY_PROHIBITED = 1;
const CONNECT_FAILED = 2;

/**
 * What a refused channel means. OpenSSH says why in the description (strerror of its connect, or
 * "unknown host"); a bare CONNECT_FAILED is most often a closed port.
 */
export function channelFailureKind(reason: unknown, description: string): DialErrorKind {
  if (reason !== CONNECT_FAILED) return 'failure'; // prohibited by sshd's config, or out of channels
  if (/unknown host|name or service|not known|no address/i.test(description)) return 'dns';
  if (/no route|host is unreachable|host is down/i.test(description)) return 'unreachable';
  if (/network is unreachable|network is down/i.test(description)) return 'network';
  if (/timed out/i.test(description)) return 'timeout';
  return 'refused';
}

export function sshDial(client: Client, host: string, port: number, signal?: AbortSignal): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => reject(abortError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      client.forwardOut('127.0.0.1', 0, host, port, (err, channel) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) {
          const { reason, message } = err as Error & { reason?: unknown };
          const description = message.replace(/^\(SSH\) Channel open failure: ?/, '');
          const why = description || (reason === ADMINISTRATIVELY_PROHIBITED ? "the guest's sshd does not allow forwarding" : 'connection failed');
          return reject(new DialError(channelFailureKind(reason, description), `${host}:${port} in the guest: ${why}`, { cause: err }));
        }
        // The caller gave up while the channel was opening: nobody will read it.
        if (signal?.aborted) return void channel.close();
        resolve(channel);
      });
    } catch (err) {
      // ssh2 throws synchronously when the connection is already gone.
      signal?.removeEventListener('abort', onAbort);
      reject(new DialError('unreachable', `the SSH connection to the guest is down: ${(err as Error).message}`, { cause: err }));
    }
  });
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof DialError ? signal.reason : new DialError('failure', 'dial aborted', { cause: signal.reason });
}
