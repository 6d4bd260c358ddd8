import { Args, loadHelpClass } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';

export default class HelpCommand extends EnvCommand {
  static override summary = 'Show help for envbox or one of its commands.';
  static override strict = false;
  static override args = { command: Args.string({ description: 'Command to show help for.', required: false }) };

  async run(): Promise<void> {
    const { argv } = await this.parse(HelpCommand);
    const HelpClass = await loadHelpClass(this.config);
    await new HelpClass(this.config, { all: false }).showHelp(argv as string[]);
  }
}
