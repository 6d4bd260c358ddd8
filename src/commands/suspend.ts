import { EnvCommand } from '../cli/base.js';

export default class Suspend extends EnvCommand {
  static override summary = "Freeze the guest's processes in place (env resume continues them).";

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { suspend } = await import('../core/lifecycle.js');
    const { flags } = await this.parse(Suspend);
    const env = await openCreatedEnv(flags.envfile);
    await suspend(env);
    this.result({ name: env.config.name, state: 'frozen' }, () => `env "${env.config.name}" is suspended`);
  }
}
