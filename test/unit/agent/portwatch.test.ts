/** Reading a guest's socket table through a small reused buffer, lines cut across reads included. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { listenLines } from '../../../src/agent/portwatch.js';

const line = (i: number, state: string) =>
  `${String(i).padStart(4)}: 0100007F:${(1024 + i).toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 ${state} 00000000:00000000 00:00000000 00000000  1000        0 ${1000 + i} 1 0000000000000000 100 0 0 10 0`;

describe('listenLines', () => {
  it('finds every LISTEN line of a table many times the buffer, whatever the read boundaries', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envbox-portwatch-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
    const rows = Array.from({ length: 5000 }, (_, i) => line(i, i % 7 === 0 ? '0A' : '06'));
    for (const [name, text] of [
      ['newline', `${[header, ...rows].join('\n')}\n`],
      ['no-newline', [header, ...rows].join('\n')],
    ] as const) {
      const file = join(dir, name);
      await writeFile(file, text);
      for (const size of [97, 4096]) {
        const lines = await listenLines(file, Buffer.alloc(size * 2));
        expect(lines).toEqual(rows.filter((_, i) => i % 7 === 0));
      }
    }
  });

  it('rejects for a table that cannot be opened', async () => {
    await expect(listenLines('/proc/2147483646/net/tcp', Buffer.alloc(1024))).rejects.toThrow(/ENOENT/);
  });
});
