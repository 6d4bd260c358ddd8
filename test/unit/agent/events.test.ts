import { appendFile, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventLogEnd, followEvents, formatEvent, openEventLog, readEvents, type AgentEvent } from '../../../src/agent/events.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-events-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the event log', () => {
  it('appends one JSON object per line, private to the user, and reads back only complete lines', async () => {
    const file = join(dir, 'events.jsonl');
    const seen: AgentEvent[] = [];
    const log = openEventLog(file, (e) => seen.push(e));
    log.emit('starting', 'agent starting', { pid: 42 });
    log.emit('forward-added', 'host 127.0.0.1:8000 → guest 127.0.0.1:8000 (tcp)');
    log.close();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await appendFile(file, '{"time":"2026-01-01T00:00:00.000Z","type":"ready","mess'); // a torn write
    const { events, offset } = await readEvents(file);
    expect(events).toEqual(seen);
    expect(events[0]).toMatchObject({ type: 'starting', message: 'agent starting', pid: 42, time: expect.stringMatching(/^\d{4}-.*Z$/) });
    expect(offset).toBeLessThan(eventLogEnd(file));
    await appendFile(file, 'age":"ready"}\nnot json\n');
    expect((await readEvents(file, offset)).events).toEqual([{ time: '2026-01-01T00:00:00.000Z', type: 'ready', message: 'ready' }]);
  });

  it('starts a new file when the old one passed 1 MiB, keeping one previous', async () => {
    const file = join(dir, 'events.jsonl');
    await writeFile(file, 'x'.repeat((1 << 20) + 1));
    openEventLog(file).close();
    expect(eventLogEnd(file)).toBe(0);
    expect((await stat(`${file}.1`)).size).toBe((1 << 20) + 1);
  });

  it('also while it runs, so a busy agent never grows its log without end', async () => {
    const file = join(dir, 'events.jsonl');
    const log = openEventLog(file);
    const long = 'y'.repeat(1000);
    for (let i = 0; i < 1100; i++) log.emit('port-detected', long);
    log.close();
    expect(eventLogEnd(file)).toBeLessThan(200_000);
    expect((await stat(`${file}.1`)).size).toBeGreaterThan(1 << 20);
    expect((await readEvents(file)).events.length).toBeGreaterThan(0);
  });

  it('follows appended events until told to stop', async () => {
    const file = join(dir, 'events.jsonl');
    const log = openEventLog(file);
    log.emit('starting', 'one');
    const from = eventLogEnd(file);
    const got: string[] = [];
    const following = followEvents(file, from, (e) => (got.push(e.type), e.type === 'ready'), { pollMs: 10 });
    log.emit('connected', 'two');
    setTimeout(() => log.emit('ready', 'three'), 50);
    await following;
    log.close();
    expect(got).toEqual(['connected', 'ready']);
  });

  it('prints a local date and time, the type and the message', () => {
    const time = new Date(2026, 10, 23, 9, 5, 7, 42).toISOString();
    expect(formatEvent({ time, type: 'ready', message: 'ready: 2 forwards' })).toBe('2026-11-23 09:05:07.042  ready            ready: 2 forwards');
  });
});
