import { describe, expect, it } from 'vitest';
import { checkHost } from '../../../../src/providers/lxc/hostcheck.js';
import { listsSocket, monitorSocketName } from '../../../../src/providers/lxc/lxc.js';

// /proc/net/unix as the kernel prints it: the path is the last field, abstract names start with @.
const TABLE = `Num       RefCount Protocol Flags    Type St Inode Path
0000000022b80f57: 00000002 00000000 00010000 0001 01 1685769 @/run/envbox/lxc/web-0123abcd/command
0000000022b80f58: 00000002 00000000 00010000 0001 01 1685770 @/run/envbox/lxc/web-0123abcd-2/command
0000000022b80f59: 00000003 00000000 00000000 0001 03 1685771 /run/systemd/notify
0000000022b80f5a: 00000002 00000000 00010000 0001 01 1685772 @/run/envbox/lxc/api-99/command`;

describe('LXC monitor socket', () => {
  it("names the monitor's abstract socket as LXC does, and gives up on names LXC would hash", () => {
    expect(monitorSocketName('/run/envbox/lxc', 'web-0123abcd')).toBe('@/run/envbox/lxc/web-0123abcd/command');
    expect(monitorSocketName('/run/envbox/lxc', 'x'.repeat(100))).toBeUndefined();
  });

  it('finds a listed socket by its whole name only', () => {
    expect(listsSocket(TABLE, '@/run/envbox/lxc/web-0123abcd/command')).toBe(true);
    expect(listsSocket(TABLE, '@/run/envbox/lxc/web-0123abcd-2/command')).toBe(true);
    expect(listsSocket(TABLE, '@/run/envbox/lxc/api-99/command')).toBe(true); // the last line, no newline after it
    expect(listsSocket(`${TABLE}\n`, '@/run/envbox/lxc/api-99/command')).toBe(true);
    expect(listsSocket(TABLE, '@/run/envbox/lxc/web-0123/command')).toBe(false);
    expect(listsSocket(TABLE, '@/run/envbox/lxc/eb-0123abcd/command')).toBe(false);
    expect(listsSocket(TABLE, '@/run/envbox/lxc/web-0123abcd/comman')).toBe(false);
  });
});

describe('checkHost', () => {
  it('decides the same in brief (env up) as in full (env doctor), without the informative details', async () => {
    const full = await checkHost();
    const brief = await checkHost({ brief: true });
    expect(brief.map((c) => [c.name, c.ok])).toEqual(full.map((c) => [c.name, c.ok]));
  });

  it('finds a tool missing from the PATH in brief mode too', async () => {
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const brief = await checkHost({ brief: true });
      for (const name of ['lxc', 'nft', 'newuidmap']) expect(brief.find((c) => c.name === name)?.ok).toBe(false);
    } finally {
      process.env.PATH = saved;
    }
  });
});
