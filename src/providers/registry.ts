import { UsageError } from '../util/errors.js';
import type { Provider } from './provider.js';

/** What a provider may be bound to, from the Envfile. */
export interface ProviderOptions {
  /** incus/lxd: the daemon (`remote:`): a remote's name, its https URL or a unix socket; unset: the local one. */
  remote?: string;
}

/** Every provider envbox knows, loaded only when used. */
const PROVIDERS: Record<string, (opts: ProviderOptions) => Promise<Provider>> = {
  container: async () => (await import('./lxc/index.js')).lxcProvider,
  vm: async () => (await import('./qemu/index.js')).qemuProvider,
  incus: async (opts) => (await import('./incus/index.js')).incusProvider('incus', opts.remote),
  lxd: async (opts) => (await import('./incus/index.js')).incusProvider('lxd', opts.remote),
};

export function providerNames(): string[] {
  return Object.keys(PROVIDERS);
}

export async function getProvider(name: string, opts: ProviderOptions = {}): Promise<Provider> {
  const load = PROVIDERS[name];
  if (!load) {
    throw new UsageError('PROVIDER_UNAVAILABLE', `provider ${name} is not available in this version of envbox`, {
      hint: `use provider: ${providerNames().join(' or ')} in the Envfile`,
    });
  }
  return load(opts);
}
