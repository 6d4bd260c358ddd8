// envbox-guest on this machine (a local folder stands in for the guest's shared folder): replaying
// host events through the helper, batched on one long-lived connection, against the shell path a guest
// without the helper falls back to (one `sh -c` doing the same renames per event), and the time from an
// EVENTS request to the event reaching a local inotifywait. The VM figures are in docs/events.md.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { figure, median, quantile } from './lib.mjs';

export const name = 'guest';

const FILES = 1000;

export async function run(root) {
  const { GuestClient } = await import(join(root, 'dist/guest/client.js'));
  const scratch = mkdtempSync(join(tmpdir(), 'envbox-bench-guest-'));
  const dir = join(scratch, 'root');
  mkdirSync(dir);
  for (let i = 0; i < FILES; i++) writeFileSync(join(dir, `f${i}`), '');
  const helper = spawn(join(root, 'native/build/envbox-guest'), ['serve', dir]);
  const guest = new GuestClient(Duplex.from({ readable: helper.stdout, writable: helper.stdin }));
  const watcher = spawn('inotifywait', ['-m', '-q', '-e', 'modify', '--format', '%f', dir]);
  try {
    await guest.hello();
    const creates = Array.from({ length: FILES }, (_, i) => ({ kind: 2, path: `f${i}` }));
    let start = process.hrtime.bigint();
    for (let i = 0; i < FILES; i += 500) await guest.events(0, creates.slice(i, i + 500));
    const batched = Number(process.hrtime.bigint() - start) / 1e6;

    const SHELL = 100;
    start = process.hrtime.bigint();
    for (let i = 0; i < SHELL; i++) spawnSync('sh', ['-c', `cd "$1" && mv f${i} .t && mv .t f${i}`, 'sh', dir]);
    const shell = (Number(process.hrtime.bigint() - start) / 1e6) * (FILES / SHELL);

    // MODIFY replay → inotify event seen by a watcher process, one at a time
    await new Promise((r) => setTimeout(r, 300));
    const lags = [];
    let waiting;
    watcher.stdout.on('data', () => waiting?.());
    for (let i = 0; i < 200; i++) {
      const seen = new Promise((r) => (waiting = r));
      const t0 = process.hrtime.bigint();
      await guest.events(0, [{ kind: 1, path: `f${i}` }]);
      await seen;
      lags.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return [
      figure(`replay ${FILES} CREATEs, batched (local folder)`, batched, 'ms', { name: 'sh -c per event', value: shell }),
      figure('EVENTS MODIFY → inotifywait sees it, p50', median(lags), 'ms'),
      figure('EVENTS MODIFY → inotifywait sees it, p99', quantile(lags, 0.99), 'ms', undefined, '≤ 100 ms end to end'),
    ];
  } finally {
    guest.close();
    watcher.kill();
    helper.kill();
    rmSync(scratch, { recursive: true, force: true });
  }
}
