/**
 * Watches what the guest listens on. For a container the host reads the guest's own tables through
 * /proc/<pid>/net (no round trip at all); otherwise one long-running SSH command prints them every
 * POLL_MS, which costs the guest a `cat` and no new channel per poll. A table that can't be read
 * (the guest is rebooting) is simply not reported, so forwards are not torn down by a blip.
 */
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, ClientChannel } from 'ssh2';
import type { GuestLink } from './link.js';
import { linesInState, parseProcNet, type SocketEntry } from './procnet.js';

export const POLL_MS = 300;
export const FRAME_END = '@@envbox-listeners@@';
/** The guest command behind the SSH path: both tables, a marker line, a short sleep, forever. */
export const LISTENERS_COMMAND = `while :; do cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; echo ${FRAME_END}; sleep ${POLL_MS / 1000}; done`;

const SCRATCH_BYTES = 64 << 10;

/**
 * The LISTEN lines of a /proc/<pid>/net/tcp{,6} table, read through `scratch` a chunk at a time:
 * no per-poll buffer the size of the table (a poll every 300 ms of a table full of TIME_WAIT would
 * otherwise pile up megabytes of garbage between the agent's rare collections).
 */
export async function listenLines(path: string, scratch: Buffer): Promise<string[]> {
  const file = await open(path, 'r');
  try {
    const out: string[] = [];
    let carry = 0; // the start of a line the last read cut, kept at the front of scratch
    for (;;) {
      const { bytesRead } = await file.read(scratch, carry, scratch.length - carry, null);
      const filled = carry + bytesRead;
      if (bytesRead === 0) {
        if (carry > 0) out.push(...linesInState(scratch.subarray(0, carry)));
        return out;
      }
      const last = scratch.lastIndexOf(0x0a, filled - 1);
      if (last < 0) {
        carry = filled === scratch.length ? 0 : filled; // a line longer than scratch is no socket line
        continue;
      }
      out.push(...linesInState(scratch.subarray(0, last + 1)));
      scratch.copy(scratch, 0, last + 1, filled);
      carry = filled - last - 1;
    }
  } finally {
    await file.close();
  }
}

export class PortWatch {
  private stopped = new AbortController();
  /** The SSH command is running or opening: only one at a time. */
  private streaming = false;
  private channel: ClientChannel | undefined;
  /** Reused for every read of the guest's tables, which a busy guest makes hundreds of KB long. */
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_BYTES);

  constructor(
    private readonly link: GuestLink,
    private readonly onTable: (entries: SocketEntry[]) => void,
    private readonly intervalMs = POLL_MS,
  ) {}

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped.abort();
    this.channel?.close();
  }

  private async loop(): Promise<void> {
    while (!this.stopped.signal.aborted) {
      const pid = this.link.netnsPid;
      if (pid !== undefined) {
        this.channel?.close();
        // Only the listeners: a busy guest's tables are mostly connections, parsed for nothing.
        const tables = await listenLines(`/proc/${pid}/net/tcp`, this.scratch)
          .then(async (v4) => [...v4, ...(await listenLines(`/proc/${pid}/net/tcp6`, this.scratch).catch(() => []))])
          .catch(() => undefined);
        if (tables && !this.stopped.signal.aborted) this.onTable(parseProcNet(tables.join('\n'), 'tcp'));
      } else if (!this.streaming && this.link.client) {
        this.stream(this.link.client);
      }
      await sleep(this.intervalMs, undefined, { signal: this.stopped.signal }).catch(() => {});
    }
  }

  private stream(client: Client): void {
    this.streaming = true;
    const done = () => {
      this.streaming = false;
      this.channel = undefined;
    };
    try {
      client.exec(LISTENERS_COMMAND, (err, channel) => {
        if (err) return done();
        if (this.stopped.signal.aborted) return void channel.close();
        this.channel = channel;
        let pending = '';
        channel.setEncoding('utf8');
        channel.on('data', (text: string) => {
          pending += text;
          let end: number;
          while ((end = pending.indexOf(`${FRAME_END}\n`)) >= 0) {
            const frame = pending.slice(0, end);
            pending = pending.slice(end + FRAME_END.length + 1);
            if (!this.stopped.signal.aborted) this.onTable(parseProcNet(frame, 'tcp'));
          }
        });
        channel.stderr.resume();
        channel.on('error', () => {});
        channel.on('close', done);
      });
    } catch {
      done(); // the connection is already going; the next 'up' starts a new command
    }
  }
}
