/** A port forward as planned (from the Envfile or a detected guest listener) and as it is doing. */

export type ForwardKind = 'static' | 'auto' | 'reverse';

export interface ForwardSpec {
  /** Stable while the forward exists: `static:0` (Envfile index), `reverse:3`, `auto:8000` (guest port). */
  id: string;
  kind: ForwardKind;
  protocol: 'tcp' | 'udp';
  /** Static/auto: where the host listens. Reverse: the host service the guest reaches. */
  hostIp: string;
  hostPort: number;
  /** Static/auto: what the guest serves. Reverse: where the guest listens. */
  guestIp: string;
  guestPort: number;
  /** The host port the Envfile asked for, when auto_correct chose another. */
  requestedHostPort?: number;
}

/**
 * active: listening and the guest is connected; waiting: set up, but the guest link is down (new
 * connections fail at once until it is back); failed: could not be set up (message says why).
 */
export type ForwardState = 'active' | 'waiting' | 'failed';

export interface ForwardStatus extends ForwardSpec {
  state: ForwardState;
  message?: string;
  /** Connections open now, and since the forward started. */
  connections: number;
  total: number;
  /** Bytes from host clients to the guest, and back. */
  bytesIn: number;
  bytesOut: number;
}

export interface ForwardCounters {
  connections: number;
  total: number;
  bytesIn: number;
  bytesOut: number;
}

export const addressText = (ip: string, port: number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** `host 127.0.0.1:8000 → guest 127.0.0.1:8000 (tcp)`, or the other way round for a reverse forward. */
export function describeForward(f: ForwardSpec): string {
  const host = `host ${addressText(f.hostIp, f.hostPort)}`;
  const guest = `guest ${addressText(f.guestIp, f.guestPort)}`;
  return f.kind === 'reverse' ? `${guest} → ${host} (${f.protocol}, reverse)` : `${host} → ${guest} (${f.protocol}${f.kind === 'auto' ? ', auto' : ''})`;
}
