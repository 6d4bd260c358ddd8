import { EnvboxError } from '../../util/errors.js';
import type { GuestUser } from '../provider.js';

/**
 * Host uids/gids envbox hands out to containers: one 65536-wide slot per env, from a pool well above
 * what useradd hands out for /etc/subuid (100000 upwards) and below 2^31 (tools that store ids as
 * signed ints). prepareHost reserves the whole pool for root in /etc/subuid and /etc/subgid, which
 * is what newuidmap (LXC runs it even as root) checks.
 */
export const POOL_BASE = 0x48000000;
export const SLOT_SIZE = 65536;
export const POOL_SLOTS = 4096;

/** The first host id of a slot: guest id N is host id base + N (in the rootfs and for guest processes). */
export function slotBase(slot: number): number {
  if (!Number.isInteger(slot) || slot < 0 || slot >= POOL_SLOTS) throw new Error(`idmap slot ${slot} out of range`);
  return POOL_BASE + slot * SLOT_SIZE;
}

/** The lowest slot no env holds. */
export function freeSlot(taken: Iterable<number>): number | undefined {
  const used = new Set(taken);
  for (let slot = 0; slot < POOL_SLOTS; slot++) if (!used.has(slot)) return slot;
  return undefined;
}

/** The `/etc/subuid` / `/etc/subgid` line that covers the pool. */
export function poolSubidLine(user = 'root'): string {
  return `${user}:${POOL_BASE}:${POOL_SLOTS * SLOT_SIZE}`;
}

/** True when the subordinate-id file text gives `user` (name or uid) every id of the pool. */
export function subidCoversPool(text: string, user: string, uid: number): boolean {
  const ranges = text
    .split('\n')
    .map((line) => line.trim().split(':'))
    .filter((f) => f.length === 3 && (f[0] === user || f[0] === String(uid)))
    .map(([, start, count]) => [Number(start), Number(start) + Number(count)] as const)
    .filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b))
    .sort((x, y) => x[0] - y[0]);
  let covered = POOL_BASE;
  for (const [a, b] of ranges) if (a <= covered && b > covered) covered = b;
  return covered >= POOL_BASE + POOL_SLOTS * SLOT_SIZE;
}

/** Other users' subordinate ranges that overlap the pool (they would share host ids with envs). */
export function poolOverlaps(text: string, user: string, uid: number): string[] {
  const end = POOL_BASE + POOL_SLOTS * SLOT_SIZE;
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => {
      const f = line.split(':');
      if (f.length !== 3 || f[0] === user || f[0] === String(uid)) return false;
      const a = Number(f[1]);
      const b = a + Number(f[2]);
      return a < end && b > POOL_BASE;
    });
}

/** The container's user namespace: guest 0-65535 -> the env's private host range, nothing else. */
export function containerIdmap(base: number): string[] {
  return [`u 0 ${base} ${SLOT_SIZE}`, `g 0 ${base} ${SLOT_SIZE}`];
}

/** A map for an idmapped mount, in /proc/PID/uid_map form (on-disk id, host id, count). */
export type MountMap = { uid: string; gid: string };

/** The image as every env's lower layer: on-disk id N appears as the env's host id base + N. */
export function imageMountMap(base: number): MountMap {
  const line = `0 ${base} ${SLOT_SIZE}`;
  return { uid: line, gid: line };
}

/**
 * A shared folder: the host owner's files appear as the guest user's and what the guest user makes
 * lands owned by the host owner, without the host owner being in the container's user namespace (a
 * guest process never runs as host root even when root owns the project). Every other on-disk id in the
 * env's own range stays itself, so files guest root makes land as the env's range id (as with a plain
 * bind mount); host files owned by anyone else appear as `nobody`.
 */
export function folderMountMap(base: number, user: GuestUser): MountMap {
  const { uid, gid, hostUid = uid, hostGid = gid } = checkGuestUser(user);
  const map = (guest: number, host: number) =>
    [
      `${host} ${base + guest} 1`,
      `${base} ${base} ${guest}`,
      `${base + guest + 1} ${base + guest + 1} ${SLOT_SIZE - guest - 1}`,
    ].join('\n');
  return { uid: map(uid, hostUid), gid: map(gid, hostGid) };
}

/** Rejects guest users a container can't have: root, or ids outside one slot; host ids inside the pool. */
export function checkGuestUser(user: GuestUser): GuestUser {
  for (const [what, id] of [
    ['uid', user.uid],
    ['gid', user.gid],
  ] as const) {
    if (!Number.isInteger(id) || id < 1 || id >= SLOT_SIZE - 1) {
      throw new EnvboxError('GUEST_USER_ID', `guest user ${user.name}: ${what} ${id} can't be used in a container`, {
        hint: `use a ${what} between 1 and ${SLOT_SIZE - 2} (root can't be the guest user; envbox uses 1000 when root owns the project)`,
      });
    }
  }
  for (const [what, id] of [
    ['hostUid', user.hostUid],
    ['hostGid', user.hostGid],
  ] as const) {
    if (id !== undefined && (!Number.isInteger(id) || id < 0 || (id >= POOL_BASE && id < POOL_BASE + POOL_SLOTS * SLOT_SIZE))) {
      throw new EnvboxError('GUEST_USER_ID', `guest user ${user.name}: ${what} ${id} is not a usable host id`, {
        hint: 'the project folder must be owned by a regular host user (or root)',
      });
    }
  }
  return user;
}
