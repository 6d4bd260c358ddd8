import { EnvCommand } from '../cli/base.js';

export default class Validate extends EnvCommand {
  static override summary = 'Check the Envfile and report every problem at once.';
  static override description =
    'Problems are printed as FILE:LINE:COL key.path: what is wrong — what to do. Exit status 2 when there are any.';
  static override examples = ['<%= config.bin %> validate', '<%= config.bin %> validate --envfile ../other/Envfile --json'];

  async run(): Promise<void> {
    const { checkEnvfile, EnvfileInvalidError, findEnvfile } = await import('../envfile/index.js');
    const { flags } = await this.parse(Validate);
    const path = findEnvfile(flags.envfile);
    const { loaded, problems, config } = await checkEnvfile(path);
    if (!config) throw new EnvfileInvalidError(loaded.display, problems);
    this.result({ envfile: loaded.path, problems: [], config }, () => `${loaded.display} is valid (env "${config.name}", provider ${config.provider})`);
  }
}
