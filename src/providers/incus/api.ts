import { EnvboxError } from '../../util/errors.js';
import type { Progress } from '../../util/progress.js';
import { adminGroup, clientCommand, describeEndpoint, initCommand, Transport, type Endpoint, type Reply, type RequestOptions } from './transport.js';

/**
 * The Incus / LXD REST API (the same protocol under two names): JSON envelopes, async operations
 * followed to the end, and every daemon error turned into an EnvboxError that says what to do.
 */

export type Flavor = 'incus' | 'lxd';

export interface Operation {
  id: string;
  description: string;
  status: string;
  status_code: number;
  metadata: Record<string, unknown> | null;
  err: string;
}

interface Envelope {
  type: 'sync' | 'async' | 'error';
  status_code?: number;
  error_code?: number;
  error?: string;
  metadata: unknown;
  operation?: string;
}

const PRODUCT: Record<Flavor, string> = { incus: 'Incus', lxd: 'LXD' };

/** Maps a daemon error to what the user should do; `what` is the action that failed ("creating the instance"). */
export function apiError(status: number, message: string, ctx: { what: string; daemon: string; flavor: Flavor }): EnvboxError {
  const product = PRODUCT[ctx.flavor];
  const said = `${product} refused ${ctx.what}: ${message}`;
  const cli = clientCommand(ctx.flavor);
  if (/idmapping abilities|idmapped mounts? (are )?not supported/i.test(message)) {
    return new EnvboxError('INCUS_IDMAP', said, {
      hint: `this daemon can't shift the shared folders' ownership; envbox then maps the host user with raw.idmap, which needs root:UID:1 lines in /etc/subuid and /etc/subgid (restart the daemon after adding them)`,
    });
  }
  if (/no root (disk )?device|root disk device|No storage pool/i.test(message)) {
    return new EnvboxError('INCUS_NOT_INITIALISED', said, { hint: `the daemon has no storage for instances: run ${initCommand(ctx.flavor)} (or give the default profile a root disk)` });
  }
  if (/address already in use/i.test(message)) {
    return new EnvboxError('INCUS_PORT_TAKEN', said, { hint: "another program took the env's SSH port on the daemon's host: env destroy && env up picks a new one" });
  }
  if (/cannot assign requested address/i.test(message)) {
    return new EnvboxError('INCUS_LISTEN_ADDRESS', said, {
      hint: "the remote's URL names an address the daemon's host doesn't have (NAT or proxy in between?): add the remote by the host's own address",
    });
  }
  if (status === 403) {
    return new EnvboxError('INCUS_FORBIDDEN', said, {
      hint: ctx.daemon.startsWith('/')
        ? `add yourself to the ${adminGroup(ctx.flavor)} group (then log in again), or run env as root`
        : `the server no longer trusts envbox's certificate: env remote rm NAME, then env remote add NAME URL --token TOKEN (token from ${cli} config trust add NAME)`,
    });
  }
  if (status === 404) return new EnvboxError('INCUS_NOT_FOUND', said, { hint: `${cli} list shows what the daemon has` });
  if (status === 409 || /already exists/i.test(message)) return new EnvboxError('INCUS_EXISTS', said, { hint: `remove it with ${cli} delete, or env destroy` });
  return new EnvboxError('INCUS_ERROR', said, { hint: `${cli} info --show-log on the instance, or the daemon's log, may say more` });
}

/** What an operation reports about itself while it runs: a line of text and, when it says, a fraction. */
export function operationProgress(metadata: Record<string, unknown> | null): { text: string; fraction?: number } | undefined {
  if (!metadata) return undefined;
  const progress = metadata.progress as { percent?: string; stage?: string; speed?: string } | undefined;
  const line = Object.entries(metadata).find(([k, v]) => k.endsWith('_progress') && typeof v === 'string')?.[1] as string | undefined;
  const percent = progress?.percent === undefined ? undefined : Number(progress.percent);
  if (!line && percent === undefined) return undefined;
  const text = line ?? `${progress?.stage?.replace(/_/g, ' ') ?? 'working'}: ${percent}%`;
  return percent !== undefined && Number.isFinite(percent) ? { text, fraction: Math.min(1, Math.max(0, percent / 100)) } : { text };
}

function isWaitTimeout(reply: Reply): boolean {
  if (reply.status === 504) return true;
  try {
    const env = JSON.parse(reply.body.toString('utf8')) as Envelope;
    return env.type === 'error' && /deadline exceeded/i.test(env.error ?? '');
  } catch {
    return false;
  }
}

export class IncusApi {
  readonly transport: Transport;
  readonly daemon: string;

  constructor(
    readonly endpoint: Endpoint,
    readonly flavor: Flavor,
  ) {
    this.transport = new Transport(endpoint, flavor);
    this.daemon = describeEndpoint(endpoint);
  }

  get product(): string {
    return PRODUCT[this.flavor];
  }

  /** `X-Incus-uid` or `X-LXD-uid`. */
  header(name: string): string {
    return `${this.flavor === 'incus' ? 'X-Incus' : 'X-LXD'}-${name}`;
  }

  error(status: number, message: string, what: string): EnvboxError {
    return apiError(status, message, { what, daemon: this.daemon, flavor: this.flavor });
  }

  /** A request whose reply the caller reads itself (files, uploads); only transport errors throw. */
  raw(method: string, path: string, opts?: RequestOptions): Promise<Reply> {
    return this.transport.request(method, path, opts);
  }

  /** The envelope of a JSON reply; an error envelope or HTTP error becomes an EnvboxError. */
  envelope(reply: Reply, what: string): Envelope {
    let env: Envelope;
    try {
      env = JSON.parse(reply.body.toString('utf8')) as Envelope;
    } catch {
      throw this.error(reply.status, `unexpected reply (HTTP ${reply.status}): ${reply.body.toString('utf8').slice(0, 200)}`, what);
    }
    if (env.type === 'error' || reply.status >= 400) throw this.error(env.error_code || reply.status, env.error || `HTTP ${reply.status}`, what);
    return env;
  }

  async get<T>(path: string, what: string): Promise<T> {
    return this.envelope(await this.raw('GET', path), what).metadata as T;
  }

  /** GET that answers undefined for "not found" instead of throwing. */
  async find<T>(path: string, what: string): Promise<T | undefined> {
    const reply = await this.raw('GET', path);
    if (reply.status === 404) return undefined;
    return this.envelope(reply, what).metadata as T;
  }

  /**
   * A call with a JSON body. A sync reply gives its metadata; an async one is followed until the
   * operation ends and gives the operation's metadata (or throws its error).
   */
  async call<T = unknown>(method: string, path: string, what: string, body?: unknown, progress?: Progress): Promise<T> {
    const reply = await this.raw(method, path, {
      headers: body === undefined ? undefined : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return this.settle<T>(reply, what, progress);
  }

  /** The result of a reply that may be an async operation. */
  async settle<T>(reply: Reply, what: string, progress?: Progress): Promise<T> {
    const env = this.envelope(reply, what);
    if (env.type !== 'async') return env.metadata as T;
    const id = (env.metadata as Operation | null)?.id ?? env.operation?.split('/').pop();
    if (!id) throw this.error(reply.status, 'async reply without an operation', what);
    return (await this.wait(id, what, progress)).metadata as T;
  }

  /**
   * Follows an operation to its end through /wait (short polls when there is progress to show, so the
   * line moves); a failed or cancelled operation throws with the daemon's reason.
   */
  async wait(id: string, what: string, progress?: Progress, timeoutMs = 30 * 60_000): Promise<Operation> {
    const deadline = Date.now() + timeoutMs;
    const poll = progress ? 1 : 30;
    const path = `/1.0/operations/${encodeURIComponent(id)}`;
    for (;;) {
      const reply = await this.raw('GET', `${path}/wait?timeout=${poll}`);
      // Incus answers a wait that timed out with an error ("context deadline exceeded"); LXD with the operation.
      const op = isWaitTimeout(reply) ? await this.get<Operation>(path, what) : (this.envelope(reply, what).metadata as Operation);
      if (op.status_code === 200) return op;
      if (op.status_code >= 400) throw this.error(op.status_code === 401 ? 499 : 500, op.err || op.status, what);
      const shown = operationProgress(op.metadata);
      if (shown && progress) progress.update(shown.text, shown.fraction);
      if (Date.now() > deadline) {
        throw new EnvboxError('INCUS_TIMEOUT', `${this.product} is still ${what} after ${Math.round(timeoutMs / 1000)}s`, {
          hint: `${this.flavor} operation show ${id} says what it is doing`,
        });
      }
    }
  }

  close(): void {
    this.transport.close();
  }
}
