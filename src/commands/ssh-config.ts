import { EnvCommand } from '../cli/base.js';

export default class SshConfig extends EnvCommand {
  static override summary = 'Print an OpenSSH Host block for the env (ssh -F, scp, rsync, IDEs).';
  static override description =
    'Every env is also listed in one includable file: add `Include ~/.local/state/envbox/ssh_config` to ~/.ssh/config and `ssh NAME` works everywhere.';

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { envSshConfig, sshConfigInclude } = await import('../core/ssh-config.js');
    const { flags } = await this.parse(SshConfig);
    const env = await openCreatedEnv(flags.envfile);
    const text = envSshConfig(env.record);
    this.result({ name: env.config.name, config: text, include: sshConfigInclude() }, () => text.trimEnd());
  }
}
