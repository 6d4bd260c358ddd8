/**
 * Opening the channel to the guest for sync and replay: the envbox-guest helper when it is
 * installed and answers HELLO, else SFTP and shell (slower, and replay can only touch paths) — said
 * once in `env logs` and shown as `via: sftp` in `env status`.
 */
import type { Client } from 'ssh2';
import type { EmitEvent } from '../agent/events.js';
import type { GuestOps } from './ops.js';
import { openSftpOps } from './sftp-ops.js';

export const GUEST_HELPER_PATH = '/usr/local/lib/envbox/envbox-guest';

export function guestOpener(emit: EmitEvent) {
  let said: string | undefined;
  return async (client: Client, roots: string[], watch: boolean): Promise<GuestOps> => {
    let why: string;
    try {
      const { openHelperOps } = await import('./helper-ops.js');
      return await openHelperOps(client, GUEST_HELPER_PATH, roots, watch);
    } catch (err) {
      why = (err as Error).message;
    }
    if (said !== why) {
      said = why;
      emit('sync-problem', `envbox-guest can't run in the guest (${why}); folders go over SFTP and shell instead (slower; replayed events are attribute changes only)`, {
        fallback: 'sftp',
      });
    }
    return openSftpOps(client, roots);
  };
}
