import { Args, Flags } from '@oclif/core';
import { EnvCommand } from '../../cli/base.js';

export default class RemoteAdd extends EnvCommand {
  static override summary = 'Add a remote Incus or LXD daemon that envs can use (remote: NAME in the Envfile).';
  static override description =
    "Make the token on the server with `incus config trust add NAME` (LXD: `lxc config trust add NAME`). envbox checks the server's certificate against the token, pins it, and has the server trust envbox's own client certificate.";
  static override args = {
    name: Args.string({ description: 'What to call the remote (lowercase letters, digits, - and _).', required: true }),
    url: Args.string({ description: 'The server, like https://incus.example.com:8443.', required: true }),
  };
  static override flags = {
    token: Flags.string({ description: 'Trust token from the server.', required: true, env: 'ENVBOX_TRUST_TOKEN' }),
  };

  async run(): Promise<void> {
    const { addRemote } = await import('../../providers/incus/remotes.js');
    const { args, flags } = await this.parse(RemoteAdd);
    const step = this.out.step(`Adding remote ${args.name}`);
    try {
      const remote = await addRemote(args.name, args.url, flags.token);
      step.done(`${remote.server} at ${remote.url}`);
      const { certificate: _certificate, ...shown } = remote;
      this.result({ remote: shown }, () => `remote ${remote.name} is ready (server certificate ${remote.fingerprint.slice(0, 12)}… pinned); use it with remote: ${remote.name}`);
    } catch (err) {
      step.fail();
      throw err;
    }
  }
}
