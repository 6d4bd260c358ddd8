import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';

export default class Up extends EnvCommand {
  static override summary = 'Create or start the env, then provision it the first time.';
  static override description =
    'Builds the image if it is not cached, creates an unprivileged guest, shares the folders, waits until SSH works and runs the provisioning steps. On a running env it only reports.';
  static override flags = {
    provision: Flags.boolean({ description: 'Run every provisioning step again (--no-provision: none).', allowNo: true }),
  };

  async run(): Promise<void> {
    const { openEnv } = await import('../core/env.js');
    const { status } = await import('../core/lifecycle.js');
    const { up } = await import('../core/up.js');
    const { flags } = await this.parse(Up);
    const env = await up(await openEnv(flags.envfile), this.out, { provision: flags.provision });
    // up resolves only with the guest running (a login just worked, or it was running under the lock).
    const report = await status(env, { state: 'running' });
    this.result({ env: report }, () => `env "${report.name}" is ${report.state} at ${report.address} — env ssh to get in`);
  }
}
