import { EnvCommand } from '../cli/base.js';
import { openCreatedEnv } from '../core/env.js';
import { suspend } from '../core/lifecycle.js';

export default class Suspend extends EnvCommand {
  static override summary = "Freeze the guest's processes in place (env resume continues them).";

  async run(): Promise<void> {
    const { flags } = await this.parse(Suspend);
    const env = await openCreatedEnv(flags.envfile);
    await suspend(env);
    this.result({ name: env.config.name, state: 'frozen' }, () => `env "${env.config.name}" is suspended`);
  }
}
