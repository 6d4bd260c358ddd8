import { describe, expect, it } from 'vitest';
import type { GuestUser } from '../../../../src/providers/provider.js';
import { fstabText, pairMap, vmFolderMap } from '../../../../src/providers/qemu/shares.js';

const user = (over: Partial<GuestUser> = {}): GuestUser => ({ name: 'dev', uid: 1000, gid: 1000, home: '/home/dev', authorizedKey: 'k', ...over });

/** Applies a uid_map text the way an idmapped mount shows an on-disk id (undefined: unmapped, shown as nobody). */
function seen(map: string, disk: number): number | undefined {
  for (const line of map.split('\n')) {
    const [from, to, count] = line.split(' ').map(Number) as [number, number, number];
    if (disk >= from && disk < from + count) return to + (disk - from);
  }
  return undefined;
}

describe('pairMap', () => {
  it('maps the pairs and keeps every other id as itself', () => {
    expect(pairMap([[0, 1000], [65534, 0]])).toBe(
      ['0 1000 1', '65534 0 1', '1 1 999', '1001 1001 64533', '65535 65535 4294901760'].join('\n'),
    );
  });
  it('drops a pair that would reuse an id', () => {
    expect(pairMap([[65534, 1000], [65534, 0]])).toBe(['65534 1000 1', '0 0 1000', '1001 1001 64533', '65535 65535 4294901760'].join('\n'));
  });
});

describe('vmFolderMap', () => {
  it.each([
    // host owner, guest user: [disk id, what the guest sees]
    ['root owns the project, guest user 1000', { hostUid: 0, hostGid: 0 }, [[0, 1000], [65534, 0], [1000, undefined], [33, 33]]],
    ['the guest user is the owner', { hostUid: 1000, hostGid: 1000 }, [[1000, 1000], [65534, 0], [0, undefined], [1001, 1001]]],
    ['a different owner', { hostUid: 1001, hostGid: 1001 }, [[1001, 1000], [1000, undefined], [0, undefined], [65534, 0]]],
  ] as [string, Partial<GuestUser>, [number, number | undefined][]][])('%s', (_, ids, cases) => {
    const map = vmFolderMap(user(ids));
    for (const [disk, guest] of cases) {
      expect(seen(map.uid, disk), `uid ${disk}`).toBe(guest);
      expect(seen(map.gid, disk), `gid ${disk}`).toBe(guest);
    }
  });

  it('is a valid uid_map: no id used twice on either side, within 340 lines', () => {
    const lines = vmFolderMap(user({ hostUid: 0, hostGid: 0 })).uid.split('\n').map((l) => l.split(' ').map(Number) as [number, number, number]);
    expect(lines.length).toBeLessThanOrEqual(340);
    for (const side of [0, 1]) {
      const ranges = lines.map((l) => [l[side]!, l[side]! + l[2]] as const).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBeGreaterThanOrEqual(ranges[i - 1]![1]);
      expect(Math.max(...ranges.map((r) => r[1]))).toBeLessThanOrEqual(4294967295);
    }
  });
});

describe('fstabText', () => {
  it('mounts the root (grown to the disk) and each folder by its tag, escaping paths', () => {
    expect(fstabText([{ host: '/p', guest: '/home/dev/project' }, { host: '/q', guest: '/srv/my data' }])).toBe(
      [
        '# envbox: written by every env up; change the Envfile, not this file',
        '/dev/vda / ext4 rw,x-systemd.growfs 0 0',
        'envbox0 /home/dev/project 9p trans=virtio,version=9p2000.L,msize=524288,cache=mmap,nofail 0 0',
        'envbox1 /srv/my\\040data 9p trans=virtio,version=9p2000.L,msize=524288,cache=mmap,nofail 0 0',
        '',
      ].join('\n'),
    );
  });
});
