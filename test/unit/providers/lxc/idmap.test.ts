import { describe, expect, it } from 'vitest';
import {
  checkGuestUser,
  containerIdmap,
  folderMountMap,
  freeSlot,
  imageMountMap,
  POOL_BASE,
  POOL_SLOTS,
  poolOverlaps,
  poolSubidLine,
  slotBase,
  subidCoversPool,
} from '../../../../src/providers/lxc/idmap.js';
import type { GuestUser } from '../../../../src/providers/provider.js';
import { EnvboxError } from '../../../../src/util/errors.js';

const user = (over: Partial<GuestUser> = {}): GuestUser => ({
  name: 'dev',
  uid: 1000,
  gid: 1000,
  home: '/home/dev',
  authorizedKey: 'ssh-ed25519 AAAA',
  ...over,
});

/** Where an on-disk id lands through a uid_map-style map (undefined: unmapped, shows as nobody). */
function through(map: string, onDisk: number): number | undefined {
  for (const line of map.split('\n')) {
    const [from, to, count] = line.split(' ').map(Number) as [number, number, number];
    if (onDisk >= from && onDisk < from + count) return to + (onDisk - from);
  }
  return undefined;
}

describe('id slots', () => {
  it('slots are disjoint 65536-ranges from the pool base', () => {
    expect(slotBase(0)).toBe(POOL_BASE);
    expect(slotBase(3)).toBe(POOL_BASE + 3 * 65536);
    expect(() => slotBase(POOL_SLOTS)).toThrow();
  });

  it.each([
    [[], 0],
    [[0, 1, 2], 3],
    [[1, 2], 0],
    [[0, 2], 1],
  ])('taken %j -> next free %i', (taken, expected) => {
    expect(freeSlot(taken)).toBe(expected);
  });

  it('a full pool has no free slot', () => {
    expect(freeSlot(Array.from({ length: POOL_SLOTS }, (_, i) => i))).toBeUndefined();
  });

  it('the container maps guest 0-65535 to its slot only', () => {
    expect(containerIdmap(slotBase(2))).toEqual([`u 0 ${slotBase(2)} 65536`, `g 0 ${slotBase(2)} 65536`]);
  });
});

describe('/etc/subuid', () => {
  const line = poolSubidLine();
  it.each([
    ['', false],
    [`${line}\n`, true],
    [`dev:100000:65536\n${line}`, true],
    [`0:${POOL_BASE}:${POOL_SLOTS * 65536}`, true],
    [`root:${POOL_BASE}:65536`, false],
    [`root:${POOL_BASE}:${POOL_SLOTS * 32768}\nroot:${POOL_BASE + POOL_SLOTS * 32768}:${POOL_SLOTS * 32768}`, true],
    [`root:1000000:1000000000\nroot:${POOL_BASE}:${POOL_SLOTS * 65536}`, true],
    [`dev:${POOL_BASE}:${POOL_SLOTS * 65536}`, false],
  ])('%j covers the pool: %s', (text, covered) => {
    expect(subidCoversPool(text, 'root', 0)).toBe(covered);
  });

  it('reports other users overlapping the pool', () => {
    const text = `dev:100000:65536\nbob:${POOL_BASE + 10}:65536\n${line}`;
    expect(poolOverlaps(text, 'root', 0)).toEqual([`bob:${POOL_BASE + 10}:65536`]);
  });
});

describe('mount maps', () => {
  const base = slotBase(1);

  it('the image shows as the env root range', () => {
    const map = imageMountMap(base);
    expect(through(map.uid, 0)).toBe(base);
    expect(through(map.uid, 42)).toBe(base + 42);
    expect(through(map.uid, 65536)).toBeUndefined();
  });

  it.each([
    ['root owns the project (guest user 1000)', user({ hostUid: 0, hostGid: 0 })],
    ['a host user owns it with the same ids', user()],
    ['a host user with other ids', user({ hostUid: 1234, hostGid: 4321 })],
  ])('folders: %s', (_name, u) => {
    const map = folderMountMap(base, u);
    const hostUid = u.hostUid ?? u.uid;
    // The host owner's files are the guest user's (the container maps guest N to base + N) ...
    expect(through(map.uid, hostUid)).toBe(base + u.uid);
    expect(through(map.gid, u.hostGid ?? u.gid)).toBe(base + u.gid);
    // ... files guest root makes land as the env's own range id, never as host root ...
    expect(through(map.uid, base)).toBe(base);
    expect(through(map.uid, base + 65535)).toBe(base + 65535);
    // ... and the guest user's host-range id is not reachable from disk a second way.
    expect(through(map.uid, base + u.uid)).toBeUndefined();
    if (hostUid !== 0) expect(through(map.uid, 0)).toBeUndefined();
    // A mapping is a bijection: no target twice.
    const targets = map.uid.split('\n').map((l) => l.split(' ').map(Number) as [number, number, number]);
    const covered = targets.reduce((n, [, , count]) => n + count, 0);
    expect(covered).toBe(65536);
  });

  it.each([
    ['guest root', user({ uid: 0 })],
    ['gid 0', user({ gid: 0 })],
    ['uid past the slot', user({ uid: 65535 })],
    ['host uid inside the pool', user({ hostUid: POOL_BASE + 5 })],
    ['negative host gid', user({ hostGid: -1 })],
  ])('rejects %s', (_name, u) => {
    expect(() => checkGuestUser(u)).toThrow(EnvboxError);
  });
});
