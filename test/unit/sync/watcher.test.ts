import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Change } from '../../../src/sync/coalesce.js';
import { FolderWatcher } from '../../../src/sync/watcher.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the host folder watcher', () => {
  let root: string;
  let watcher: FolderWatcher | undefined;
  let batches: Change[][];

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'envbox-watch-'));
    batches = [];
  });

  afterEach(async () => {
    await watcher?.close();
    watcher = undefined;
    await rm(root, { recursive: true, force: true });
  });

  async function start() {
    watcher = new FolderWatcher({ root, ignored: () => false, onBatch: (changes) => batches.push(changes), onError: (err) => { throw err; } });
    await watcher.start();
  }

  async function settle(until: () => boolean, ms = 3_000) {
    const end = Date.now() + ms;
    while (!until() && Date.now() < end) await sleep(10);
  }

  it('keeps a write that follows another to the same file within a few milliseconds', async () => {
    const file = join(root, 'a.txt');
    await writeFile(file, 'first');
    await start();
    // Each round: one write, then a second with a different size soon after. chokidar passes on
    // one change per file in 50 ms, so the second write must be found by looking again.
    for (let round = 1; round <= 5; round++) {
      const last = 'x'.repeat(round * 10);
      await writeFile(file, 'y');
      await sleep(20);
      await writeFile(file, last);
      await settle(() => watcher!.known.get('a.txt')?.size === last.length);
      expect(watcher!.known.get('a.txt')?.size, `round ${round}`).toBe(last.length);
      await sleep(100);
    }
  });

  it('reports creates, writes and deletes as they happen', async () => {
    await start();
    await writeFile(join(root, 'b.txt'), 'b');
    await settle(() => watcher!.known.has('b.txt'));
    expect(watcher!.known.get('b.txt')?.size).toBe(1);
    await rm(join(root, 'b.txt'));
    await settle(() => !watcher!.known.has('b.txt'));
    expect(watcher!.known.has('b.txt')).toBe(false);
    expect(batches.length).toBeGreaterThanOrEqual(2);
  });
});
