import type { ImageUsers } from '../images/index.js';
import { listEnvs } from './state.js';

/**
 * The image keys every created env stands on, with the envs' names: its container image, and for a VM
 * the VM image its disk is an overlay of (kept in the provider's machine record).
 */
export async function imageUsers(): Promise<ImageUsers> {
  const users: ImageUsers = new Map();
  const add = (key: unknown, name: string) => {
    if (typeof key !== 'string') return;
    const names = users.get(key) ?? [];
    if (!names.includes(name)) names.push(name);
    users.set(key, names);
  };
  for (const { record } of await listEnvs()) {
    add(record.image?.key, record.name);
    const machineImage = record.machine?.image as { key?: unknown } | undefined;
    add(machineImage?.key, record.name);
  }
  return users;
}
