import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';
import { table } from '../cli/table.js';
import { agentServes } from '../sync/served.js';

export default class Sync extends EnvCommand {
  static override summary = "Wait until the guest has every host change (--wait, the default), or show each folder's sync and event replay (--status).";
  static override description =
    '`env sync --wait` returns once every change made on the host before it is in the guest: synced folders are copied and replayed events delivered, so a script can edit on the host and then run in the guest. `--status` shows, per folder, the mode, whether events are native, replayed or off, the state, pending changes and the replay lag.';
  static override flags = {
    status: Flags.boolean({ description: 'Show each folder instead of waiting.', exclusive: ['wait'] }),
    wait: Flags.boolean({ description: 'Return once every host change made before it is in the guest (the default).' }),
    timeout: Flags.integer({ description: 'Seconds --wait may take before it fails.', default: 120, min: 1 }),
  };

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { agentRunning } = await import('../core/agent.js');
    const { syncStatus, waitSynced } = await import('../core/sync.js');
    const { EnvboxError } = await import('../util/errors.js');
    const { flags } = await this.parse(Sync);
    const env = await openCreatedEnv(flags.envfile);
    if ((await agentRunning(env)) === undefined) {
      throw new EnvboxError('AGENT_NOT_RUNNING', `env "${env.config.name}" has no agent running, so nothing is synced or replayed`, { hint: 'env up starts it' });
    }
    if (flags.status) {
      const folders = await syncStatus(env);
      this.result({ name: env.config.name, folders }, () =>
        [
          table([
            ['FOLDER', 'GUEST', 'MODE', 'EVENTS', 'STATE', 'VIA', 'PENDING', 'LAG', 'FAILED'],
            ...folders.map((f) => [f.host, f.guest, f.mode, f.events, f.state, f.via ?? '-', String(f.pending), f.lastLagMs === null ? '-' : `${f.lastLagMs} ms`, String(f.failed)]),
          ]),
          ...folders.filter((f) => f.lastProblem).map((f) => `  ${f.guest}: ${f.lastProblem}`),
        ].join('\n'),
      );
      return;
    }
    const result = await waitSynced(env, { timeoutMs: flags.timeout * 1000 });
    const active = result.folders.filter(agentServes);
    this.result({ name: env.config.name, synced: true, waitedMs: result.waitedMs, folders: result.folders }, () =>
      active.length ? `in sync: ${active.map((f) => f.guest).join(', ')} (${result.waitedMs} ms)` : 'nothing to sync: every folder is a mount the guest sees natively',
    );
  }
}
