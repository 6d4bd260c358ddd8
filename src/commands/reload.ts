import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';

export default class Reload extends EnvCommand {
  static override summary = 'Halt and start the env again (picks up Envfile changes to folders and limits).';
  static override flags = {
    provision: Flags.boolean({ description: 'Run every provisioning step again (--no-provision: none).', allowNo: true }),
  };

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { halt, status } = await import('../core/lifecycle.js');
    const { up } = await import('../core/up.js');
    const { flags } = await this.parse(Reload);
    const env = await openCreatedEnv(flags.envfile);
    await halt(env, this.out, { force: false, timeoutMs: 30_000 });
    await up(env, this.out, { provision: flags.provision ?? false });
    const report = await status(env);
    this.result({ env: report }, () => `env "${report.name}" is ${report.state} at ${report.address}`);
  }
}
