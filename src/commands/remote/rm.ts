import { Args } from '@oclif/core';
import { EnvCommand } from '../../cli/base.js';

export default class RemoteRm extends EnvCommand {
  static override summary = "Forget a remote daemon and ask it to stop trusting envbox's certificate.";
  static override args = { name: Args.string({ description: 'The remote.', required: true }) };

  async run(): Promise<void> {
    const { removeRemote } = await import('../../providers/incus/remotes.js');
    const { args } = await this.parse(RemoteRm);
    const { remote, revoked } = await removeRemote(args.name);
    this.result({ removed: remote.name, revoked }, () =>
      revoked ? `removed remote ${remote.name}; the server no longer trusts envbox` : `removed remote ${remote.name} (the server could not be told: it may still trust envbox's certificate)`,
    );
  }
}
