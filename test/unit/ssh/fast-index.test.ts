import { describe, expect, it } from 'vitest';
import { fnv1a64, parseFastIndex, renderFastIndex, stampOf, type FastIndex } from '../../../src/ssh/fast-index.js';

const index: FastIndex = {
  envfile: { path: '/home/me/web/Envfile', size: 120, mtimeSec: 1_796_308_150, mtimeNsec: 703_956_008 },
  knownHosts: { path: '/home/me/.local/state/envbox/envs/web-1/known_hosts', size: 111, mtimeSec: 1_796_308_638, mtimeNsec: 5 },
  socket: '/home/me/.local/state/envbox/ssh/a0400d5dd5c86cd4',
  prefix: "export GREETING='hello there'; ",
  folders: [
    { host: '/home/me/web', guest: '/home/dev/project' },
    { host: '/home/me/data dir', guest: '/srv/data' },
  ],
};

describe('fnv1a64', () => {
  it.each([
    ['', 'cbf29ce484222325'],
    ['a', 'af63dc4c8601ec8c'],
    ['foobar', '85944171f73967e8'],
  ])('hashes %j as the reference FNV-1a does', (text, hex) => {
    expect(fnv1a64(text)).toBe(hex);
  });

  it('hashes the UTF-8 bytes, as the shim sees a path', () => {
    expect(fnv1a64('/home/ü/Envfile')).not.toBe(fnv1a64('/home/u/Envfile'));
    expect(fnv1a64('/home/ü/Envfile')).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('the shortcut index', () => {
  it('is NUL-terminated fields in the documented order', () => {
    const fields = renderFastIndex(index).toString('utf8').split('\0');
    expect(fields.pop()).toBe('');
    expect(fields).toEqual([
      'envbox-fast-1',
      '/home/me/web/Envfile', '120', '1796308150', '703956008',
      '/home/me/.local/state/envbox/envs/web-1/known_hosts', '111', '1796308638', '5',
      '/home/me/.local/state/envbox/ssh/a0400d5dd5c86cd4',
      "export GREETING='hello there'; ",
      '2',
      '/home/me/web', '/home/dev/project',
      '/home/me/data dir', '/srv/data',
    ]);
  });

  it('reads back what it wrote, with or without folders', () => {
    expect(parseFastIndex(renderFastIndex(index))).toEqual(index);
    const bare = { ...index, prefix: '', folders: [] };
    expect(parseFastIndex(renderFastIndex(bare))).toEqual(bare);
  });

  it('refuses a field that would shift every later one', () => {
    expect(() => renderFastIndex({ ...index, prefix: 'export A=\0; ' })).toThrow(/NUL/);
  });

  it('treats a truncated, foreign or miscounted file as no index', () => {
    const data = renderFastIndex(index);
    expect(parseFastIndex(data.subarray(0, data.length - 1))).toBeUndefined();
    expect(parseFastIndex(Buffer.from('envbox-fast-2\0'))).toBeUndefined();
    const miscounted = Buffer.from(data.toString('utf8').replace('\x002\0', '\x003\0'));
    expect(parseFastIndex(miscounted)).toBeUndefined();
  });

  it('takes size and nanosecond mtime from a bigint stat', () => {
    expect(stampOf('/x', { size: 42n, mtimeNs: 1_796_308_150_703_956_008n })).toEqual({
      path: '/x',
      size: 42,
      mtimeSec: 1_796_308_150,
      mtimeNsec: 703_956_008,
    });
  });
});
