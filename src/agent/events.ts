/**
 * The agent's event log: one JSON object per line in events.jsonl, `{time, type, message, ...}`.
 * The agent appends; `env up` tails it for `ready` or `failed` (as lima's hostagent events do),
 * `env logs` prints it. Each event is one write(2) to an O_APPEND file, so a reader never sees
 * half a line from us, and readers only take complete lines anyway.
 */
import { closeSync, fstatSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export type AgentEventType =
  | 'starting'
  | 'connected'
  | 'disconnected'
  | 'reconnecting'
  | 'forward-added'
  | 'forward-removed'
  | 'forward-failed'
  | 'port-detected'
  | 'proxy-listening'
  | 'sync-progress'
  | 'sync-ready'
  | 'sync-problem'
  | 'ready'
  | 'failed'
  | 'stopped';

export interface AgentEvent {
  /** ISO 8601 with milliseconds. */
  time: string;
  type: AgentEventType;
  /** One line a person can read. */
  message: string;
  [key: string]: unknown;
}

export type EmitEvent = (type: AgentEventType, message: string, extra?: Record<string, unknown>) => void;

// Past this the log starts over (one previous file is kept).
const ROTATE_BYTES = 1 << 20;

export interface EventLog {
  emit: EmitEvent;
  close(): void;
}

export function openEventLog(file: string, onEvent?: (event: AgentEvent) => void): EventLog {
  let fd: number | undefined;
  let size = 0;
  // A long-lived agent on a guest that opens ports all day must not grow its log without end.
  const open = () => {
    try {
      if (statSync(file).size > ROTATE_BYTES) renameSync(file, `${file}.1`);
    } catch {
      // no log yet
    }
    fd = openSync(file, 'a', 0o600);
    size = fstatSync(fd).size;
  };
  open();
  return {
    emit(type, message, extra = {}) {
      const event: AgentEvent = { time: new Date().toISOString(), type, message, ...extra };
      if (fd !== undefined) {
        const line = `${JSON.stringify(event)}\n`;
        size += writeSync(fd, line);
        if (size > ROTATE_BYTES) {
          closeSync(fd);
          open();
        }
      }
      onEvent?.(event);
    },
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}

/** The log's current size: where a reader that only wants what comes next starts. */
export function eventLogEnd(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Complete events from byte `offset` on, and the offset just past the last complete line. */
export async function readEvents(file: string, offset = 0): Promise<{ events: AgentEvent[]; offset: number }> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { events: [], offset };
    throw err;
  }
  try {
    const { size } = await handle.stat();
    // A log rotated under us starts again from its beginning.
    const from = size < offset ? 0 : offset;
    const buf = Buffer.alloc(size - from);
    if (buf.length > 0) await handle.read(buf, 0, buf.length, from);
    const end = buf.lastIndexOf(0x0a) + 1;
    return { events: parseEvents(buf.subarray(0, end).toString('utf8')), offset: from + end };
  } finally {
    await handle.close();
  }
}

/** Lines that are not events (a torn write from a killed agent, a hand edit) are skipped. */
export function parseEvents(text: string): AgentEvent[] {
  const out: AgentEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const value = JSON.parse(line) as Partial<AgentEvent>;
      if (typeof value.type === 'string' && typeof value.time === 'string') {
        out.push({ ...value, message: typeof value.message === 'string' ? value.message : '' } as AgentEvent);
      }
    } catch {
      // skipped
    }
  }
  return out;
}

/** Calls `onEvent` for each event appended after `offset` until it returns true or the signal aborts. */
export async function followEvents(
  file: string,
  offset: number,
  onEvent: (event: AgentEvent) => boolean | void,
  opts: { signal?: AbortSignal; pollMs?: number } = {},
): Promise<void> {
  let at = offset;
  while (!opts.signal?.aborted) {
    const { events, offset: next } = await readEvents(file, at);
    at = next;
    for (const event of events) if (onEvent(event) === true) return;
    await sleep(opts.pollMs ?? 100, undefined, { signal: opts.signal }).catch(() => {});
  }
}

/** `2026-11-23 16:02:11.042  forward-added    host 127.0.0.1:8000 → guest 127.0.0.1:8000 (tcp)`, in local time. */
export function formatEvent(event: AgentEvent): string {
  const at = new Date(event.time);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const when = Number.isNaN(at.getTime())
    ? event.time
    : `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ` +
      `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}.${pad(at.getMilliseconds(), 3)}`;
  return `${when}  ${event.type.padEnd(15)}  ${event.message}`;
}
