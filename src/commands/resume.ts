import { EnvCommand } from '../cli/base.js';

export default class Resume extends EnvCommand {
  static override summary = 'Continue a suspended guest.';

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { resume } = await import('../core/lifecycle.js');
    const { flags } = await this.parse(Resume);
    const env = await openCreatedEnv(flags.envfile);
    await resume(env);
    this.result({ name: env.config.name, state: 'running' }, () => `env "${env.config.name}" is running`);
  }
}
