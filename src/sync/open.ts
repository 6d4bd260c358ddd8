/**
 * Opening the channel to the guest for sync and replay: the envbox-guest helper when it is
 * installed and answers HELLO, else SFTP and shell (slower, and replay can only touch paths) — said
 * once in `env logs` and shown as `via: sftp` in `env status`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from 'ssh2';
import type { EmitEvent } from '../agent/events.js';
import type { GuestOps } from './ops.js';
import { openSftpOps } from './sftp-ops.js';

export const GUEST_HELPER_PATH = '/usr/local/lib/envbox/envbox-guest';

/**
 * `env up` starts the agent while the guest boots and installs the helper (and makes the synced
 * folders) only once SSH works, so a first attempt may find neither yet: try again for this long
 * before settling for SFTP. A helper that is there but can't run falls back at once.
 */
const NOT_YET_THERE_MS = 20_000;
const RETRY_MS = 250;
const notYetThere = (why: string) => /No such file or directory/.test(why);

export function guestOpener(emit: EmitEvent) {
  let said: string | undefined;
  return async (client: Client, roots: string[], watch: boolean): Promise<GuestOps> => {
    const { openHelperOps } = await import('./helper-ops.js');
    const started = Date.now();
    let why: string;
    for (;;) {
      try {
        return await openHelperOps(client, GUEST_HELPER_PATH, roots, watch);
      } catch (err) {
        why = (err as Error).message;
      }
      if (!notYetThere(why) || Date.now() - started > NOT_YET_THERE_MS) break;
      await sleep(RETRY_MS);
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
