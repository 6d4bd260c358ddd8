import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';

export default class Halt extends EnvCommand {
  static override summary = 'Shut the guest down cleanly (forced after --timeout seconds).';
  static override flags = {
    force: Flags.boolean({ char: 'f', description: 'Stop at once, without a clean shutdown.' }),
    timeout: Flags.integer({ description: 'Seconds to wait for a clean shutdown before forcing it.', default: 30, min: 0 }),
  };

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { halt } = await import('../core/lifecycle.js');
    const { flags } = await this.parse(Halt);
    const env = await openCreatedEnv(flags.envfile);
    const state = await halt(env, this.out, { force: flags.force, timeoutMs: flags.timeout * 1000 });
    this.result({ name: env.config.name, state }, () => `env "${env.config.name}" is ${state}`);
  }
}
