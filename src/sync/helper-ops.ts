/**
 * The fast path: envbox-guest serve over one exec channel. Filled in against the guest helper's
 * client; until the helper is installed every open fails and the caller falls back to SFTP.
 */
import type { Client } from 'ssh2';
import type { GuestOps } from './ops.js';

export async function openHelperOps(_client: Client, path: string, _roots: string[], _watch: boolean): Promise<GuestOps> {
  throw new Error(`${path} is not available`);
}
