import { EnvCommand } from '../cli/base.js';
import { openCreatedEnv } from '../core/env.js';
import { resume } from '../core/lifecycle.js';

export default class Resume extends EnvCommand {
  static override summary = 'Continue a suspended guest.';

  async run(): Promise<void> {
    const { flags } = await this.parse(Resume);
    const env = await openCreatedEnv(flags.envfile);
    await resume(env);
    this.result({ name: env.config.name, state: 'running' }, () => `env "${env.config.name}" is running`);
  }
}
