import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';
import { UsageError } from '../util/errors.js';

export default class Provision extends EnvCommand {
  static override summary = 'Run the provisioning steps again (every step but run: never ones).';
  static override flags = {
    step: Flags.integer({ description: 'Run only this step (1-based; may be a run: never step).', multiple: true, min: 1 }),
  };

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { provisionEnv } = await import('../core/provision.js');
    const { flags } = await this.parse(Provision);
    const env = await openCreatedEnv(flags.envfile);
    const bad = flags.step?.find((n) => n > env.config.provision.length);
    if (bad !== undefined) throw new UsageError('BAD_STEP', `there is no provisioning step ${bad}`, { hint: `the Envfile has ${env.config.provision.length}` });
    const step = this.out.step('Provisioning');
    let ran: number;
    try {
      ran = await provisionEnv(env, this.out, step, { all: true, only: flags.step?.map((n) => n - 1) });
    } catch (err) {
      step.fail();
      throw err;
    }
    step.done(`${ran} step${ran === 1 ? '' : 's'}`);
    this.result({ name: env.config.name, steps: ran }, () => undefined);
  }
}
