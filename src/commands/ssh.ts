import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';
import { SHORTCUT_NOTE } from '../cli/shortcut-note.js';

export default class Ssh extends EnvCommand {
  static override summary = 'Open a shell in the guest, or run a command there (env ssh -- CMD ARGS…).';
  static override description =
    "Without a command: an interactive shell, starting in the guest folder that matches the current host folder. With one: no terminal unless -t, streams passed through, and the guest command's exit status is env's.\n\n" +
    SHORTCUT_NOTE;
  static override strict = false;
  static override examples = ['<%= config.bin %> ssh', '<%= config.bin %> ssh -- make test', '<%= config.bin %> ssh -t -- htop'];
  static override flags = {
    tty: Flags.boolean({ char: 't', description: 'Give the command a terminal.' }),
  };

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { guestCwd, runInGuest } = await import('../core/run.js');
    const { flags, argv } = await this.parse(Ssh);
    const env = await openCreatedEnv(flags.envfile);
    process.exitCode = await runInGuest(env, argv as string[], { tty: flags.tty, cwd: guestCwd(env) });
  }
}
