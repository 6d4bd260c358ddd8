import { describe, expect, it } from 'vitest';
import { formatSize, parseSize } from '../../src/util/size.js';
import { closest } from '../../src/util/suggest.js';

describe('parseSize', () => {
  it.each([
    ['2GiB', 2 * 2 ** 30],
    ['512M', 512 * 2 ** 20],
    ['512MB', 512e6],
    ['1.5G', 1.5 * 2 ** 30],
    ['100', 100],
    [4096, 4096],
    ['2 gib', 2 * 2 ** 30],
  ])('%s', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(['', 'lots', '2 Gigs', '-1G', '1e9', 1.5, -3])('rejects %s', (text) => expect(parseSize(text)).toBeUndefined());

  it('formats sizes', () => {
    expect(formatSize(512)).toBe('512B');
    expect(formatSize(1536 * 2 ** 20)).toBe('1.5GiB');
  });
});

describe('closest', () => {
  it.each([
    ['provder', ['name', 'provider', 'image'], 'provider'],
    ['hots', ['host', 'guest'], 'host'],
    ['imgae', ['image', 'name'], 'image'],
    ['zzz', ['host', 'guest'], undefined],
  ])('%s → %s', (word, candidates, expected) => expect(closest(word, candidates)).toBe(expected));
});
