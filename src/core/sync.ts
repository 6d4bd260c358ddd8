/**
 * Folder sync and event replay from the CLI's side: the `env up` steps that install envbox-guest
 * and wait for the initial copy, and `env sync`.
 *
 *   installGuestHelper(env, step)   copies native/build/envbox-guest into the guest when its sha256 differs
 *   waitSynced(env, opts)           the agent's barrier: every host change made before the call is in the guest
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { eventLogEnd, followEvents } from '../agent/events.js';
import { agentFiles } from '../agent/files.js';
import { nativeHelperPath } from '../native/locate.js';
import { collector, exec, execCapture, shellQuote } from '../ssh/exec.js';
import type { FolderStatus } from '../sync/manager.js';
import { GUEST_HELPER_PATH } from '../sync/open.js';
import { EnvboxError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import { agentRequest, folderSpecs } from './agent.js';
import type { Env } from './env.js';
import { openSession } from './session.js';

/**
 * Puts envbox-guest at /usr/local/lib/envbox/envbox-guest (root:root 0755) unless the same file is
 * there, and makes sure each synced folder exists in the guest, owned by the env's user. A missing
 * build or a guest that refuses it is not fatal: the agent then uses its slower path and says so.
 */
export async function installGuestHelper(env: Env, step: Progress): Promise<string> {
  const client = await openSession(env, 30_000);
  try {
    const user = env.record?.user?.name ?? env.config.user;
    for (const f of folderSpecs(env).filter((f) => f.mode === 'sync')) {
      const r = await execCapture(client, `sudo -n install -d -o ${shellQuote([user])} -g "$(id -g)" ${shellQuote([f.guest])}`);
      if (r.code !== 0) throw new EnvboxError('SYNC_FOLDER_FAILED', `cannot create the synced folder ${f.guest} in the guest: ${r.stderr.trim()}`, { hint: 'check that the guest path is writable by root and not a file' });
    }
    const local = nativeHelperPath('envbox-guest');
    if (!local) return 'not built (npm run build); folders use the slower SFTP path';
    const binary = await readFile(local);
    const sha = createHash('sha256').update(binary).digest('hex');
    const have = await execCapture(client, `test -x ${shellQuote([GUEST_HELPER_PATH])} && sha256sum ${shellQuote([GUEST_HELPER_PATH])} 2>/dev/null`);
    if (have.stdout.split(/\s/)[0] === sha) return 'up to date';
    step.update(`copying envbox-guest (${(binary.length / 1024).toFixed(0)} KiB)`);
    const dir = GUEST_HELPER_PATH.replace(/\/[^/]+$/, '');
    const temp = `${GUEST_HELPER_PATH}.new`;
    const script = `sudo -n install -d -m 0755 ${shellQuote([dir])} && sudo -n tee ${shellQuote([temp])} >/dev/null && sudo -n chmod 0755 ${shellQuote([temp])} && sudo -n chown root:root ${shellQuote([temp])} && sudo -n mv -f ${shellQuote([temp])} ${shellQuote([GUEST_HELPER_PATH])}`;
    const err: Buffer[] = [];
    const code = await exec(client, script, { stdin: Readable.from([binary]), stdout: collector(), stderr: collector(err) });
    if (code !== 0) return `could not be installed (${Buffer.concat(err).toString().trim() || `exit ${code}`}); folders use the slower SFTP path`;
    const version = await execCapture(client, `${shellQuote([GUEST_HELPER_PATH])} --version`);
    if (version.code !== 0) return `installed but does not run in this guest (${(version.stderr || version.stdout).trim() || `exit ${version.code}`}); folders use the slower SFTP path`;
    return `installed (${version.stdout.trim()})`;
  } finally {
    client.end();
  }
}

export interface SyncResult {
  folders: FolderStatus[];
  waitedMs: number;
}

/** The agent's "synced" barrier; progress lines (the initial copy) go to `progress` meanwhile. */
export async function waitSynced(env: Env, opts: { timeoutMs: number; progress?: Progress }): Promise<SyncResult> {
  const stop = new AbortController();
  const file = agentFiles(env.dir).events;
  if (opts.progress) {
    void followEvents(
      file,
      Math.max(0, eventLogEnd(file) - 4096),
      (event) => {
        if (event.type === 'sync-progress' || event.type === 'sync-ready') opts.progress!.update(event.message);
      },
      { signal: stop.signal, pollMs: 200 },
    );
  }
  try {
    return await agentRequest<SyncResult>(env, 'sync-wait', { timeoutMs: opts.timeoutMs }, opts.timeoutMs + 5_000);
  } finally {
    stop.abort();
  }
}

export async function syncStatus(env: Env): Promise<FolderStatus[]> {
  return agentRequest<FolderStatus[]>(env, 'sync-status');
}
