import { chmod, mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { existsSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from 'ssh2';
import { FolderSyncs, type FolderSpec } from '../../../src/sync/manager.js';
import { HostFolder } from '../../../src/sync/hostfs.js';
import { FakeOps, snapshot } from './fake-ops.js';

const client = {} as Client;

describe('mode: sync folders against a fake guest', () => {
  let scratch: string;
  let host: string;
  let guest: string;
  let syncs: FolderSyncs | undefined;
  let ops: FakeOps;
  let events: { type: string; message: string }[];

  beforeEach(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-sync-'));
    host = join(scratch, 'host');
    guest = join(scratch, 'guest');
    await mkdir(host);
    await mkdir(guest);
    events = [];
  });

  afterEach(async () => {
    await syncs?.close();
    syncs = undefined;
    await rm(scratch, { recursive: true, force: true });
  });

  async function start(spec: Partial<FolderSpec> = {}) {
    const folder: FolderSpec = { host, guest: '/home/dev/project', mode: 'sync', events: 'native', ignore: ['node_modules', '*.log'], ...spec };
    syncs = new FolderSyncs([folder], {
      openOps: async () => (ops = new FakeOps([guest])),
      emit: (type, message) => events.push({ type, message }),
    });
    await syncs.start();
    await syncs.attach(client);
  }

  const guestTree = () => snapshot(guest);
  const hostTree = () => snapshot(host, (rel) => rel === 'node_modules' || rel.endsWith('.log'));

  it('copies the folder at start: new files, directories, modes and symlinks; removes guest-only files; skips ignored ones', async () => {
    await mkdir(join(host, 'src/deep'), { recursive: true });
    await writeFile(join(host, 'src/deep/a.ts'), 'export {}');
    await writeFile(join(host, 'run.sh'), '#!/bin/sh', { mode: 0o755 });
    await symlink('src/deep/a.ts', join(host, 'link'));
    await symlink('/etc', join(host, 'outside'));
    await mkdir(join(host, 'node_modules/x'), { recursive: true });
    await writeFile(join(host, 'node_modules/x/i.js'), 'ignored');
    await writeFile(join(host, 'debug.log'), 'ignored');
    await writeFile(join(guest, 'stale.txt'), 'guest only');
    await mkdir(join(guest, 'old/dir'), { recursive: true });
    await start();
    await syncs!.wait(10_000);
    expect(guestTree()).toEqual(hostTree());
    expect(guestTree()['outside']).toBe('-> /etc');
    expect(existsSync(join(guest, 'node_modules'))).toBe(false);
    expect(events.some((e) => e.type === 'sync-ready')).toBe(true);
  });

  it('a second start copies only what differs', async () => {
    await writeFile(join(host, 'a'), 'one');
    await writeFile(join(host, 'b'), 'two');
    await start();
    await syncs!.wait(10_000);
    await syncs!.close();
    await writeFile(join(host, 'b'), 'changed while down');
    await start();
    await syncs!.wait(10_000);
    expect(ops.calls.filter((c) => c.startsWith('write'))).toEqual(['write b']);
    expect(guestTree()).toEqual(hostTree());
  });

  it('propagates creates, writes, deletes, renames, mkdirs, symlinks and modes, and leaves ignored paths alone', async () => {
    await writeFile(join(host, 'keep.txt'), 'v1');
    await mkdir(join(host, 'dir'));
    await writeFile(join(host, 'dir/inner.txt'), 'inner');
    await writeFile(join(host, 'gone.txt'), 'bye');
    await start();
    await syncs!.wait(10_000);

    await writeFile(join(host, 'keep.txt'), 'v2, longer');
    await writeFile(join(host, 'new.txt'), 'new');
    await unlink(join(host, 'gone.txt'));
    await rename(join(host, 'dir'), join(host, 'moved'));
    await mkdir(join(host, 'made/deeper'), { recursive: true });
    await writeFile(join(host, 'made/deeper/f'), 'f');
    await symlink('keep.txt', join(host, 'sym'));
    await chmod(join(host, 'new.txt'), 0o700);
    await writeFile(join(host, 'skip.log'), 'ignored');
    await mkdir(join(host, 'node_modules'));
    await writeFile(join(host, 'node_modules/m.js'), 'ignored');
    await syncs!.wait(10_000);
    expect(guestTree()).toEqual(hostTree());
    expect(existsSync(join(guest, 'skip.log'))).toBe(false);
    expect(ops.calls.some((c) => c.includes('node_modules') || c.includes('skip.log'))).toBe(false);
    // The directory moved as one rename, not as a delete and copies.
    expect(ops.calls).toContain('rename dir moved');
  });

  it('the barrier covers a change made just before it', async () => {
    await start();
    await syncs!.wait(10_000);
    for (let i = 0; i < 20; i++) {
      await writeFile(join(host, 'counter'), String(i));
      await syncs!.wait(10_000);
      expect(snapshot(guest)['counter']).toBe(`644 ${i}`);
    }
  });

  it('500 files in a burst all arrive', async () => {
    await start();
    await syncs!.wait(10_000);
    await mkdir(join(host, 'burst'));
    await Promise.all(Array.from({ length: 500 }, (_, i) => writeFile(join(host, `burst/f${i}`), `${i}`)));
    await syncs!.wait(20_000);
    expect(events.filter((e) => e.type === 'sync-problem')).toEqual([]);
    expect(Object.keys(snapshot(guest)).filter((k) => k.startsWith('burst/')).length).toBe(500);
  });

  it('changes made while the channel is down are sent after it comes back', async () => {
    await start();
    await syncs!.wait(10_000);
    ops.broken = true;
    await writeFile(join(host, 'while-down.txt'), 'queued');
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(join(guest, 'while-down.txt'))).toBe(false);
    syncs!.detach();
    await syncs!.attach(client);
    await syncs!.wait(10_000);
    expect(snapshot(guest)['while-down.txt']).toBe('644 queued');
  });

  it('never acts on paths from the guest that could leave the folder', async () => {
    await writeFile(join(host, 'a'), 'a');
    syncs = new FolderSyncs([{ host, guest: '/g', mode: 'sync', events: 'native', ignore: [] }], {
      openOps: async () => {
        ops = new FakeOps([guest]);
        ops.extraList = [
          { type: 'f', mode: 0o644, size: 1, mtimeMs: 0, path: '../escape' },
          { type: 'f', mode: 0o644, size: 1, mtimeMs: 0, path: '/etc/passwd' },
          { type: 'd', mode: 0o755, size: 0, mtimeMs: 0, path: 'x/../../y' },
        ];
        return ops;
      },
      emit: (type, message) => events.push({ type, message }),
    });
    await syncs.start();
    await syncs.attach(client);
    await syncs.wait(10_000);
    expect(ops.calls.filter((c) => c.startsWith('remove'))).toEqual([]);
    expect(events.find((e) => e.type === 'sync-problem')?.message).toMatch(/3 path\(s\) that can't be inside \/g/);
  });

  it('does not read through a symlinked parent that leads out of the folder', async () => {
    const outside = join(scratch, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'secret');
    await symlink(outside, join(host, 'out'));
    const folder = new HostFolder(host);
    await expect(folder.entry('out/secret')).rejects.toThrow(/leads out of the folder/);
    await symlink(join(outside, 'secret'), join(host, 'direct'));
    expect(await folder.entry('direct')).toEqual({ type: 'symlink', target: join(outside, 'secret') });
    expect(lstatSync(join(host, 'direct')).isSymbolicLink()).toBe(true);

    // A parent found inside the folder and then swapped for a symlink is refused in the next batch.
    await mkdir(join(host, 'sub'));
    await writeFile(join(host, 'sub/secret'), 'mine');
    const mine = await folder.entry('sub/secret');
    expect(mine?.type).toBe('file');
    if (mine?.type === 'file') await mine.file.close();
    await rm(join(host, 'sub'), { recursive: true });
    await symlink(outside, join(host, 'sub'));
    folder.fresh();
    await expect(folder.entry('sub/secret')).rejects.toThrow(/leads out of the folder/);
  });

  it('tells files, folders and symlinks apart with one open, and skips what is none of them', async () => {
    const folder = new HostFolder(host);
    await mkdir(join(host, 'd'), { mode: 0o750 });
    await writeFile(join(host, 'f'), 'data', { mode: 0o640 });
    await symlink('f', join(host, 'l'));
    const f = await folder.entry('f');
    expect(f?.type === 'file' && { size: f.file.size, mode: f.file.mode }).toEqual({ size: 4, mode: 0o640 });
    if (f?.type === 'file') await f.file.close();
    expect(await folder.entry('d')).toEqual({ type: 'dir', mode: 0o750 });
    expect(await folder.entry('l')).toEqual({ type: 'symlink', target: 'f' });
    expect(await folder.entry('missing')).toBeUndefined();
    expect(await folder.entry('f/below-a-file')).toBeUndefined();
    // A file whose folder went away before the copy got to it: nothing to copy (its delete follows).
    expect(await folder.entry('gone-folder/x')).toBeUndefined();
  });
});

describe('event replay on a mounted folder', () => {
  let scratch: string;
  let syncs: FolderSyncs | undefined;

  afterEach(async () => {
    await syncs?.close();
    syncs = undefined;
    await rm(scratch, { recursive: true, force: true });
  });

  it('replays net changes, skips ignored paths, and turns a big burst into one rescan', async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-replay-'));
    await writeFile(join(scratch, 'a.txt'), 'a');
    let ops!: FakeOps;
    syncs = new FolderSyncs([{ host: scratch, guest: '/p', mode: 'mount', events: 'replayed', ignore: ['tmp'] }], {
      openOps: async () => (ops = new FakeOps(['/nonexistent'])),
      emit: () => {},
    });
    await syncs.start();
    await syncs.attach(client);
    await writeFile(join(scratch, 'a.txt'), 'changed');
    await mkdir(join(scratch, 'tmp'));
    await writeFile(join(scratch, 'tmp/x'), 'ignored');
    await syncs.wait(10_000);
    const listed = ops.replays.flatMap((r) => (r.changes === 'rescan' ? ['rescan'] : r.changes.map((c) => `${c.kind} ${c.path}`)));
    // A write seen half-done is replayed again when it completes: the same modify, never anything else.
    expect([...new Set(listed)]).toEqual(['modify a.txt']);

    ops.replays.length = 0;
    await Promise.all(Array.from({ length: 100 }, (_, i) => writeFile(join(scratch, `f${i}`), 'x')));
    await syncs.wait(10_000);
    const kinds = ops.replays.map((r) => (r.changes === 'rescan' ? 'rescan' : r.changes.length));
    // Every created path is covered: listed one by one, or by a rescan of the folder.
    const listedCount = kinds.filter((k) => k !== 'rescan').reduce((a, b) => (a as number) + (b as number), 0) as number;
    expect(kinds.includes('rescan') || listedCount === 100).toBe(true);
    expect(syncs.status()[0]).toMatchObject({ events: 'replayed', state: 'watching', pending: 0 });
  });
});
