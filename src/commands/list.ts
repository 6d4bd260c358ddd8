import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';
import { table } from '../cli/table.js';

export default class List extends EnvCommand {
  static override summary = 'List every env on this host.';
  static override description = 'Reads envbox state, so it shows envs from every project folder. Stale envs (Envfile gone) are marked.';

  static override flags = {
    prune: Flags.boolean({ description: 'Destroy what is left of stale envs (their Envfile is gone).' }),
  };

  async run(): Promise<void> {
    const { pruneEnv } = await import('../core/lifecycle.js');
    const { listEnvs } = await import('../core/state.js');
    const { flags } = await this.parse(List);
    let envs = await listEnvs();
    if (flags.prune) {
      for (const e of envs.filter((e) => e.stale)) await pruneEnv(e.record, this.out);
      envs = envs.filter((e) => !e.stale);
    }
    const rows = envs
      .map(({ record, stale }) => ({
        id: record.id,
        name: record.name,
        provider: record.provider,
        address: record.machine?.address ?? null,
        envfile: record.envfile,
        stale,
      }));
    this.result({ envs: rows }, () => {
      if (rows.length === 0) return 'No envs on this host yet. Run env up in a folder with an Envfile.';
      const header = ['NAME', 'ID', 'PROVIDER', 'ADDRESS', 'ENVFILE'];
      const lines = rows.map((r) => [r.name, r.id, r.provider, r.address ?? '-', r.envfile + (r.stale ? ' (stale)' : '')]);
      return table([header, ...lines]);
    });
  }
}
