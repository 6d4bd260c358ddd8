import { describe, expect, it } from 'vitest';
import type { EntryStat } from '../../../src/sync/coalesce.js';
import { toGuestEvents } from '../../../src/sync/helper-ops.js';
import type { ListEntry } from '../../../src/sync/ops.js';
import { ignoreMatcher } from '../../../src/sync/paths.js';
import { planInitialSync } from '../../../src/sync/plan.js';
import { parseFindList } from '../../../src/sync/sftp-ops.js';

const f = (size: number, mtimeMs: number, mode = 0o644): EntryStat => ({ type: 'file', ino: 1, size, mtimeMs, mode });
const d = (mode = 0o755): EntryStat => ({ type: 'dir', ino: 2, size: 0, mtimeMs: 0, mode });
const l = (): EntryStat => ({ type: 'symlink', ino: 3, size: 5, mtimeMs: 0, mode: 0o777 });
const g = (type: ListEntry['type'], path: string, size = 0, mtimeMs = 0, mode = type === 'd' ? 0o755 : 0o644): ListEntry => ({ type, path, size, mtimeMs, mode });
const none = () => false;

describe('initial sync plan', () => {
  it('copies everything into an empty guest folder, parents first', () => {
    const host = new Map<string, EntryStat>([
      ['a/b/c.txt', f(3, 10)],
      ['a', d()],
      ['a/b', d(0o700)],
      ['link', l()],
    ]);
    expect(planInitialSync(host, [], none)).toEqual({
      remove: [],
      mkdir: [
        { path: 'a', mode: 0o755 },
        { path: 'a/b', mode: 0o700 },
      ],
      write: ['a/b/c.txt'],
      symlink: ['link'],
      chmod: [],
      rejected: [],
    });
  });

  it('skips files of the same size that the guest has at least as new, writes the rest', () => {
    const host = new Map<string, EntryStat>([
      ['same', f(3, 1000.5)],
      ['newer-on-host', f(3, 2000)],
      ['other-size', f(4, 10)],
      ['mode-only', f(3, 10, 0o755)],
    ]);
    const guest = [g('f', 'same', 3, 1500), g('f', 'newer-on-host', 3, 1500), g('f', 'other-size', 3, 1500), g('f', 'mode-only', 3, 1500)];
    const plan = planInitialSync(host, guest, none);
    expect(plan.write.sort()).toEqual(['newer-on-host', 'other-size']);
    expect(plan.chmod).toEqual([{ path: 'mode-only', mode: 0o755 }]);
  });

  it("where the guest keeps the host's mtimes, skips only the same size and mtime: an older host time is new content too", () => {
    const host = new Map<string, EntryStat>([
      ['same', f(3, 1000.4)],
      ['restored-older', f(3, 900)],
      ['edited-newer', f(3, 2000)],
      ['other-size', f(4, 1000)],
      ['mode-only', f(3, 1000, 0o755)],
    ]);
    const guest = [g('f', 'same', 3, 1000), g('f', 'restored-older', 3, 1000), g('f', 'edited-newer', 3, 1000), g('f', 'other-size', 3, 1000), g('f', 'mode-only', 3, 1000)];
    const plan = planInitialSync(host, guest, none, true);
    expect(plan.write.sort()).toEqual(['edited-newer', 'other-size', 'restored-older']);
    expect(plan.chmod).toEqual([{ path: 'mode-only', mode: 0o755 }]);
    // Without kept mtimes (SFTP, an older helper) the same older file looks current.
    expect(planInitialSync(host, guest, none, false).write.sort()).toEqual(['edited-newer', 'other-size']);
  });

  it('removes guest-only paths (the topmost of a tree) and paths whose type changed, but keeps ignored ones', () => {
    const host = new Map<string, EntryStat>([['x', d()]]);
    const guest = [g('d', 'old'), g('f', 'old/a'), g('d', 'old/sub'), g('f', 'old/sub/b'), g('f', 'x'), g('d', 'node_modules'), g('f', 'node_modules/m.js')];
    const plan = planInitialSync(host, guest, ignoreMatcher(['node_modules']));
    expect(plan.remove).toEqual(['old', 'x']);
    expect(plan.mkdir).toEqual([{ path: 'x', mode: 0o755 }]);
  });

  it('never acts on guest paths that could leave the folder', () => {
    const guest = [g('f', '../outside'), g('f', '/etc/passwd'), g('d', 'a/../../b'), g('f', '')];
    const plan = planInitialSync(new Map(), guest, none);
    expect(plan.remove).toEqual([]);
    expect(plan.rejected).toEqual(['../outside', '/etc/passwd', 'a/../../b', '']);
  });
});

describe('guest answers and requests', () => {
  it('parses find -printf listings (the SFTP path)', () => {
    const out = 'f\t644\t12\t1700000000.5000000000\tsrc/a b.txt\0d\t755\t4096\t1700000000.0000000000\tsrc\0l\t777\t3\t1.0\tlink\0p\t644\t0\t1.0\tfifo\0';
    expect(parseFindList(out)).toEqual([
      { type: 'f', mode: 0o644, size: 12, mtimeMs: 1700000000500, path: 'src/a b.txt' },
      { type: 'd', mode: 0o755, size: 4096, mtimeMs: 1700000000000, path: 'src' },
      { type: 'l', mode: 0o777, size: 3, mtimeMs: 1000, path: 'link' },
    ]);
  });

  it('maps net changes to EVENTS entries, and a rescan to the root', () => {
    expect(
      toGuestEvents([
        { kind: 'create', path: 'f', type: 'file' },
        { kind: 'create', path: 'd', type: 'dir' },
        { kind: 'create', path: 's', type: 'symlink' },
        { kind: 'modify', path: 'f', type: 'file' },
        { kind: 'delete', path: 'g', type: 'file' },
        { kind: 'rename', path: 'a', to: 'b', type: 'file' },
      ]),
    ).toEqual([
      { kind: 2, path: 'f' },
      { kind: 3, path: 'd' },
      { kind: 2, path: 's' },
      { kind: 1, path: 'f' },
      { kind: 4, path: 'g' },
      { kind: 5, path: 'a', to: 'b' },
    ]);
    expect(toGuestEvents('rescan')).toEqual([{ kind: 6, path: '' }]);
  });
});
