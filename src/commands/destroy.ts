import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';
import { UsageError } from '../util/errors.js';

export default class Destroy extends EnvCommand {
  static override summary = 'Remove the guest and everything envbox keeps for it (the project folder is untouched).';
  static override flags = {
    force: Flags.boolean({ char: 'f', description: 'Do not ask.' }),
  };

  async run(): Promise<void> {
    const { openEnv } = await import('../core/env.js');
    const { destroy } = await import('../core/lifecycle.js');
    const { flags } = await this.parse(Destroy);
    const env = await openEnv(flags.envfile);
    if (!env.record) {
      this.result({ name: env.config.name, destroyed: false }, () => `env "${env.config.name}" does not exist; nothing to do`);
      return;
    }
    if (!flags.force) {
      if (!process.stdin.isTTY || !process.stdout.isTTY || flags.json) {
        throw new UsageError('CONFIRM_NEEDED', `destroying env "${env.config.name}" needs confirmation`, { hint: 'run env destroy -f' });
      }
      const { confirm } = await import('@inquirer/prompts');
      if (!(await confirm({ message: `Destroy env "${env.config.name}" and everything in its guest?`, default: false }))) {
        this.result({ name: env.config.name, destroyed: false }, () => 'Kept it.');
        return;
      }
    }
    const destroyed = await destroy(env, this.out);
    this.result({ name: env.config.name, destroyed }, () => (destroyed ? `env "${env.config.name}" destroyed` : 'nothing to do'));
  }
}
