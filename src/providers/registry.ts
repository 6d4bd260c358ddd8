import { UsageError } from '../util/errors.js';
import type { Provider } from './provider.js';

/** Every provider envbox knows, loaded only when used. */
const PROVIDERS: Record<string, () => Promise<Provider>> = {
  container: async () => (await import('./lxc/index.js')).lxcProvider,
};

export function providerNames(): string[] {
  return Object.keys(PROVIDERS);
}

export async function getProvider(name: string): Promise<Provider> {
  const load = PROVIDERS[name];
  if (!load) {
    throw new UsageError('PROVIDER_UNAVAILABLE', `provider ${name} is not available in this version of envbox`, {
      hint: `use provider: ${providerNames().join(' or ')} in the Envfile`,
    });
  }
  return load();
}
