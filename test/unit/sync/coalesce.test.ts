import { describe, expect, it } from 'vitest';
import { coalesce, type EntryStat, type Known, type RawEvent } from '../../../src/sync/coalesce.js';

const file = (ino: number, mtimeMs = 1, size = 1, mode = 0o644): EntryStat => ({ type: 'file', ino, size, mtimeMs, mode });
const dir = (ino: number, mode = 0o755): EntryStat => ({ type: 'dir', ino, size: 0, mtimeMs: 0, mode });
const add = (rel: string, stat: EntryStat): RawEvent => ({ kind: 'add', rel, stat });
const change = (rel: string, stat: EntryStat): RawEvent => ({ kind: 'change', rel, stat });
const unlink = (rel: string): RawEvent => ({ kind: 'unlink', rel });

describe('coalescing', () => {
  it('create then delete is nothing', () => {
    const known: Known = new Map();
    expect(coalesce([add('a', file(1)), change('a', file(1, 2, 5)), unlink('a')], known)).toEqual([]);
    expect(known.size).toBe(0);
  });

  it('a new file written several times is one create', () => {
    const known: Known = new Map();
    expect(coalesce([add('a', file(1)), change('a', file(1, 2)), change('a', file(1, 3))], known)).toEqual([{ kind: 'create', path: 'a', type: 'file' }]);
    expect(known.get('a')?.mtimeMs).toBe(3);
  });

  it('many writes to a known file are one modify', () => {
    const known: Known = new Map([['a', file(1)]]);
    expect(coalesce([change('a', file(1, 2)), change('a', file(1, 3))], known)).toEqual([{ kind: 'modify', path: 'a', type: 'file' }]);
  });

  it('drops ctime-only changes (same mtime, size, inode, mode)', () => {
    const known: Known = new Map([['a', file(1, 5, 10)]]);
    expect(coalesce([change('a', file(1, 5, 10))], known)).toEqual([]);
  });

  it('a mode change alone is a mode-only modify', () => {
    const known: Known = new Map([['a', file(1)]]);
    expect(coalesce([change('a', file(1, 1, 1, 0o755))], known)).toEqual([{ kind: 'modify', path: 'a', type: 'file', modeOnly: true }]);
  });

  it('delete of a known file', () => {
    const known: Known = new Map([['a', file(1)]]);
    expect(coalesce([unlink('a')], known)).toEqual([{ kind: 'delete', path: 'a', type: 'file' }]);
    expect(known.has('a')).toBe(false);
  });

  it('unlink + add with the same inode is a rename', () => {
    const known: Known = new Map([['old.txt', file(7)]]);
    expect(coalesce([unlink('old.txt'), add('new.txt', file(7))], known)).toEqual([{ kind: 'rename', path: 'old.txt', to: 'new.txt', type: 'file' }]);
    expect([...known.keys()]).toEqual(['new.txt']);
  });

  it('unlink + add with another inode is a delete and a create', () => {
    const known: Known = new Map([['old.txt', file(7)]]);
    expect(coalesce([unlink('old.txt'), add('new.txt', file(8))], known)).toEqual([
      { kind: 'delete', path: 'old.txt', type: 'file' },
      { kind: 'create', path: 'new.txt', type: 'file' },
    ]);
  });

  it('an atomic save (write a temp file, rename it over) is one modify', () => {
    const known: Known = new Map([['a.txt', file(1)]]);
    const changes = coalesce([add('.a.txt.swp', file(2)), unlink('.a.txt.swp'), unlink('a.txt'), add('a.txt', file(2, 9))], known);
    // a.txt had inode 1 and now has inode 2 (the temp file's): new content at the same path
    expect(changes).toEqual([{ kind: 'modify', path: 'a.txt', type: 'file' }]);
  });

  it('a renamed directory is one rename; its children fold into it', () => {
    const known: Known = new Map([
      ['d', dir(10)],
      ['d/x', file(11)],
      ['d/sub', dir(12)],
      ['d/sub/y', file(13)],
    ]);
    const events = [unlink('d/sub/y'), unlink('d/x'), { kind: 'unlink', rel: 'd/sub' } as RawEvent, unlink('d'), add('e', dir(10)), add('e/x', file(11)), add('e/sub', dir(12)), add('e/sub/y', file(13))];
    expect(coalesce(events, known)).toEqual([{ kind: 'rename', path: 'd', to: 'e', type: 'dir' }]);
    expect([...known.keys()].sort()).toEqual(['e', 'e/sub', 'e/sub/y', 'e/x']);
  });

  it('a deleted directory is one delete', () => {
    const known: Known = new Map([
      ['d', dir(10)],
      ['d/x', file(11)],
      ['d/y', file(12)],
    ]);
    expect(coalesce([unlink('d/x'), unlink('d/y'), unlink('d')], known)).toEqual([{ kind: 'delete', path: 'd', type: 'dir' }]);
    expect(known.size).toBe(0);
  });

  it('creates come parents first, directories before files, after renames and deletes', () => {
    const known: Known = new Map([['gone', file(1)], ['mv', file(2)]]);
    const changes = coalesce([add('n/m/f', file(5)), add('n', dir(3)), add('n/m', dir(4)), unlink('gone'), unlink('mv'), add('moved', file(2))], known);
    expect(changes).toEqual([
      { kind: 'rename', path: 'mv', to: 'moved', type: 'file' },
      { kind: 'delete', path: 'gone', type: 'file' },
      { kind: 'create', path: 'n', type: 'dir' },
      { kind: 'create', path: 'n/m', type: 'dir' },
      { kind: 'create', path: 'n/m/f', type: 'file' },
    ]);
  });

  it('orders a rename chain so nothing is overwritten before it moves', () => {
    const known: Known = new Map([['a', file(1)], ['b', file(2)]]);
    expect(coalesce([unlink('b'), add('c', file(2)), unlink('a'), add('b', file(1))], known)).toEqual([
      { kind: 'rename', path: 'b', to: 'c', type: 'file' },
      { kind: 'rename', path: 'a', to: 'b', type: 'file' },
    ]);
  });

  it('orders a long chain, and keeps the events\' order for renames nothing holds up', () => {
    const known: Known = new Map([['a', file(1)], ['b', file(2)], ['c', file(3)], ['x', file(9)], ['y', file(8)]]);
    // mv c d; mv b c; mv a b: the guest must get them in an order where no rename lands on a path still to move.
    const events = [unlink('x'), add('x2', file(9)), unlink('c'), add('d', file(3)), unlink('b'), add('c', file(2)), unlink('a'), add('b', file(1)), unlink('y'), add('y2', file(8))];
    expect(coalesce(events, known).map((c) => (c.kind === 'rename' ? `${c.path}>${c.to}` : c.kind))).toEqual(['x>x2', 'c>d', 'b>c', 'a>b', 'y>y2']);
  });

  it('a moved tree is one rename, but a folder moved out of it in the same burst is a rename of its own', () => {
    const known: Known = new Map([
      ['t', dir(1)],
      ['t/a', dir(2)],
      ['t/a/f', file(3)],
      ['t/b', dir(4)],
      ['t/b/g', file(5)],
    ]);
    const events = [unlink('t/a/f'), unlink('t/a'), unlink('t/b/g'), unlink('t/b'), unlink('t'), add('u', dir(1)), add('u/a', dir(2)), add('u/a/f', file(3)), add('elsewhere', dir(4)), add('elsewhere/g', file(5))];
    const changes = coalesce(events, known);
    expect(changes.map((c) => (c.kind === 'rename' ? `${c.path}>${c.to}` : c.kind))).toEqual(['t>u', 't/b>elsewhere']);
    expect([...known.keys()].sort()).toEqual(['elsewhere', 'elsewhere/g', 'u', 'u/a', 'u/a/f']);
  });

  it('10,000 files renamed in one burst are 10,000 renames; a tree of 1,000 folders deleted is one delete', () => {
    const known: Known = new Map([['src', dir(1)]]);
    for (let i = 0; i < 10_000; i++) known.set(`src/f${i}.js`, file(10 + i));
    const renames = coalesce(
      Array.from({ length: 10_000 }, (_, i) => [unlink(`src/f${i}.js`), add(`src/f${i}.ts`, file(10 + i))]).flat(),
      known,
    );
    expect(renames).toHaveLength(10_000);
    expect(renames.every((c, i) => c.kind === 'rename' && c.path === `src/f${i}.js` && c.to === `src/f${i}.ts`)).toBe(true);

    const tree: Known = new Map([['t', dir(1)]]);
    for (let d = 0; d < 1_000; d++) {
      tree.set(`t/d${d}`, dir(100_000 + d));
      for (let f = 0; f < 5; f++) tree.set(`t/d${d}/f${f}`, file(200_000 + d * 10 + f));
    }
    const gone = [...tree.keys()].reverse().map(unlink);
    expect(coalesce(gone, tree)).toEqual([{ kind: 'delete', path: 't', type: 'dir' }]);
    expect(tree.size).toBe(0);
  });

  it('a swap (a cycle) falls back to deletes and creates', () => {
    const known: Known = new Map([['a', file(1)], ['b', file(2)]]);
    const changes = coalesce([unlink('a'), unlink('b'), add('a', file(2)), add('b', file(1))], known);
    expect(changes.filter((c) => c.kind === 'rename')).toEqual([]);
    expect(changes.filter((c) => c.kind === 'create').map((c) => c.path).sort()).toEqual(['a', 'b']);
  });

  it('a file replaced by a directory is a delete and a mkdir', () => {
    const known: Known = new Map([['x', file(1)]]);
    expect(coalesce([unlink('x'), add('x', dir(2))], known)).toEqual([
      { kind: 'delete', path: 'x', type: 'file' },
      { kind: 'create', path: 'x', type: 'dir' },
    ]);
  });
});
