import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { pidAlive } from '../../util/lock.js';
import { hostStateDir } from '../../util/paths.js';
import { freeSlot, POOL_BASE, POOL_SLOTS, SLOT_SIZE } from './idmap.js';
import { RUN_DIR } from './layout.js';

/**
 * Host-wide facts every env shares: which idmap slot and which address each env holds, and the bridge.
 * Both files change only under one lock, so two `env up`s at once never hand out the same range or address.
 */
export interface IdmapState {
  slots: Record<string, number>;
}

export interface NetworkState {
  bridge: string;
  /** e.g. 10.71.0.0/24 */
  subnet: string;
  gateway: string;
  leases: Record<string, string>;
  /** net.ipv4.ip_forward was 0 and envbox turned it on: turned off again with the bridge. */
  forwardingEnabled?: boolean;
}

const idmapsFile = () => join(hostStateDir(), 'idmaps.json');
const networkFile = () => join(hostStateDir(), 'network.json');

export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function writeJson(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
}

export const readIdmaps = async (): Promise<IdmapState> => (await readJson<IdmapState>(idmapsFile())) ?? { slots: {} };
export const readNetwork = (): Promise<NetworkState | undefined> => readJson<NetworkState>(networkFile());

export async function writeIdmaps(state: IdmapState): Promise<void> {
  if (Object.keys(state.slots).length === 0) await rm(idmapsFile(), { force: true });
  else await writeJson(idmapsFile(), state);
}

export async function writeNetwork(state: NetworkState | undefined): Promise<void> {
  if (!state) await rm(networkFile(), { force: true });
  else await writeJson(networkFile(), state);
}

/**
 * Slots of containers whose config sits in the shared lxcpath, whichever state folder they belong to (an
 * envbox with another XDG_STATE_HOME keeps its own idmaps.json but must not get the same range).
 */
async function slotsOfOtherContainers(id: string): Promise<number[]> {
  const lxcpath = join(RUN_DIR, 'lxc');
  const names = (await readdir(lxcpath).catch(() => [] as string[])).filter((name) => name !== id);
  const bases = await Promise.all(
    names.map(async (name) => /^lxc\.idmap = u 0 (\d+) /m.exec(await readFile(join(lxcpath, name, 'config'), 'utf8').catch(() => ''))?.[1]),
  );
  return bases.filter((b): b is string => !!b).map((b) => (Number(b) - POOL_BASE) / SLOT_SIZE);
}

/** The env's idmap slot, reserving the lowest free one if it has none. Call under the lock. */
export async function reserveSlot(id: string): Promise<number> {
  const state = await readIdmaps();
  const held = state.slots[id];
  if (held !== undefined) return held;
  const slot = freeSlot([...Object.values(state.slots), ...(await slotsOfOtherContainers(id))]);
  if (slot === undefined) {
    throw new EnvboxError('IDMAP_POOL_FULL', `all ${POOL_SLOTS} container id ranges are in use`, {
      hint: 'destroy envs you no longer need (env list shows them)',
    });
  }
  state.slots[id] = slot;
  await writeIdmaps(state);
  return slot;
}

export async function releaseSlot(id: string): Promise<void> {
  const state = await readIdmaps();
  if (!(id in state.slots)) return;
  delete state.slots[id];
  await writeIdmaps(state);
}


/**
 * Runs `fn` holding the host lock: a file created exclusively, holding the owner's pid so a lock left
 * by a crashed envbox is taken over instead of blocking every later `env up`. It lives in /run/envbox, not
 * the state folder: bridges, subnets and id ranges are the host's, whatever XDG_STATE_HOME says.
 */
export async function withHostLock<T>(fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  await mkdir(hostStateDir(), { recursive: true, mode: 0o700 });
  const file = join(RUN_DIR, 'lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(file, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      // A destroy elsewhere may have just removed the (empty) /run/envbox.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        await mkdir(RUN_DIR, { recursive: true, mode: 0o711 });
        continue;
      }
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (owner > 0 && !pidAlive(owner)) {
        await rm(file, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new EnvboxError('HOST_LOCK_TIMEOUT', `another envbox (pid ${owner || '?'}) holds ${file}`, {
          hint: `wait for it to finish; if no envbox is running, remove ${file}`,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(file, { force: true });
  }
}
