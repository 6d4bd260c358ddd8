import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';
import { SHORTCUT_NOTE } from '../cli/shortcut-note.js';
import { UsageError } from '../util/errors.js';

export default class Exec extends EnvCommand {
  static override summary = "Run a command in the guest; its exit status is env's.";
  static override description = SHORTCUT_NOTE;
  static override strict = false;
  static override examples = ['<%= config.bin %> exec -- npm test', '<%= config.bin %> exec uname -a'];
  static override flags = {
    tty: Flags.boolean({ char: 't', description: 'Give the command a terminal.' }),
  };

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { guestCwd, runInGuest } = await import('../core/run.js');
    const { flags, argv } = await this.parse(Exec);
    if (argv.length === 0) throw new UsageError('USAGE', 'env exec needs a command', { hint: 'env exec -- CMD ARGS…, or env ssh for a shell' });
    const env = await openCreatedEnv(flags.envfile);
    process.exitCode = await runInGuest(env, argv as string[], { tty: flags.tty, cwd: guestCwd(env) });
  }
}
