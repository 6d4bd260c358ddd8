import { describe, expect, it } from 'vitest';
import { badRelPath, checkRelPath, DEFAULT_IGNORE, guestPathOf, hostRelative, ignoreMatcher } from '../../../src/sync/paths.js';

describe('host → guest path mapping', () => {
  it.each([
    ['/p', '/p/a.txt', 'a.txt'],
    ['/p', '/p/src/deep/x.ts', 'src/deep/x.ts'],
    ['/p/', '/p/a', 'a'],
    ['/p', '/p', undefined],
    ['/p', '/pp/a', undefined],
    ['/p', '/other/a', undefined],
    ['/p', '/p/../etc/passwd', undefined],
    ['/p', '/', undefined],
  ])('hostRelative(%s, %s) = %s', (root, path, rel) => {
    expect(hostRelative(root, path)).toBe(rel);
  });

  it('maps a relative path under the guest folder', () => {
    expect(guestPathOf('/home/dev/project', 'src/a.ts')).toBe('/home/dev/project/src/a.ts');
    expect(guestPathOf('/', 'a')).toBe('/a');
  });

  it.each([
    ['', 'is empty'],
    ['/etc/passwd', 'is absolute'],
    ['..', 'has a ".." component'],
    ['a/../../b', 'has a ".." component'],
    ['a/./b', 'has a "." component'],
    ['a//b', 'has an empty component'],
    ['a/', 'has an empty component'],
    ['a\0b', 'contains a NUL byte'],
  ])('rejects %j (%s)', (rel, why) => {
    expect(badRelPath(rel)).toBe(why);
    expect(() => checkRelPath(rel)).toThrow(why);
    expect(() => guestPathOf('/g', rel)).toThrow(why);
  });

  it('accepts names that only look odd', () => {
    for (const rel of ['..a', 'a..', '.hidden/x', 'a b/c', 'ü/ñ']) expect(badRelPath(rel)).toBeUndefined();
  });
});

describe('ignore globs', () => {
  const cases: [string[], string, boolean, boolean?][] = [
    [['node_modules'], 'node_modules', true, true],
    [['node_modules'], 'node_modules/x/y.js', true],
    [['node_modules'], 'pkg/node_modules/y.js', true],
    [['node_modules'], 'node_modules_old/y.js', false],
    [['*.log'], 'a.log', true],
    [['*.log'], 'logs/deep/b.log', true],
    [['*.log'], 'a.log.txt', false],
    [['/build'], 'build/out.js', true],
    [['/build'], 'src/build/out.js', false],
    [['src/gen'], 'src/gen/x', true],
    [['src/gen'], 'lib/src/gen/x', false],
    [['**/tmp/**'], 'a/b/tmp/c', true],
    [['cache/'], 'cache', false, false],
    [['cache/'], 'cache', true, true],
    [['cache/'], 'cache/x', true],
    [['*.log', '!keep.log'], 'keep.log', false],
    [['*.log', '!keep.log'], 'drop.log', true],
    [['a?c'], 'abc', true],
    [['a?c'], 'a/c', false],
    [['.git/**'], '.git/objects/ab/cd', true],
    [['.git/**'], '.gitignore', false],
    [['# comment', ''], 'x', false],
  ];
  it.each(cases)('%j ignores %s: %s', (patterns, rel, ignored, isDir) => {
    expect(ignoreMatcher(patterns)(rel, isDir)).toBe(ignored);
  });

  it('ignores .git internals by default but not .git itself', () => {
    const m = ignoreMatcher(DEFAULT_IGNORE);
    expect(m('.git/HEAD')).toBe(true);
    expect(m('.git', true)).toBe(false);
    expect(m('src/.github/x')).toBe(false);
  });

  it('treats regex characters in globs literally', () => {
    expect(ignoreMatcher(['a+b(1).txt'])('a+b(1).txt')).toBe(true);
    expect(ignoreMatcher(['a+b(1).txt'])('aab1.txt')).toBe(false);
  });
});
