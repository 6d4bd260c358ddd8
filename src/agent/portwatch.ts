/**
 * Watches what the guest listens on. For a container the host reads the guest's own tables through
 * /proc/<pid>/net (no round trip at all); otherwise one long-running SSH command prints them every
 * POLL_MS, which costs the guest a `cat` and no new channel per poll. A table that can't be read
 * (the guest is rebooting) is simply not reported, so forwards are not torn down by a blip.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, ClientChannel } from 'ssh2';
import type { GuestLink } from './link.js';
import { linesInState, parseProcNet, type SocketEntry } from './procnet.js';

export const POLL_MS = 300;
export const FRAME_END = '@@envbox-listeners@@';
/** The guest command behind the SSH path: both tables, a marker line, a short sleep, forever. */
export const LISTENERS_COMMAND = `while :; do cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; echo ${FRAME_END}; sleep ${POLL_MS / 1000}; done`;

export class PortWatch {
  private stopped = new AbortController();
  /** The SSH command is running or opening: only one at a time. */
  private streaming = false;
  private channel: ClientChannel | undefined;

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
        const tables = await Promise.all([
          readFile(`/proc/${pid}/net/tcp`).then((t) => linesInState(t)),
          readFile(`/proc/${pid}/net/tcp6`).then(
            (t) => linesInState(t),
            () => [],
          ),
        ]).catch(() => undefined);
        if (tables && !this.stopped.signal.aborted) this.onTable(parseProcNet(tables.flat().join('\n'), 'tcp'));
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
