import { EnvCommand } from '../../cli/base.js';
import { table } from '../../cli/table.js';

export default class RemoteList extends EnvCommand {
  static override summary = 'List the remote daemons added with env remote add.';

  async run(): Promise<void> {
    const { listRemotes } = await import('../../providers/incus/remotes.js');
    await this.parse(RemoteList);
    const remotes = (await listRemotes()).map(({ certificate: _certificate, ...rest }) => rest);
    this.result({ remotes }, () =>
      remotes.length === 0
        ? 'no remotes; add one with env remote add NAME URL --token TOKEN'
        : table([['NAME', 'URL', 'SERVER', 'FINGERPRINT', 'ADDED'], ...remotes.map((r) => [r.name, r.url, r.server, `${r.fingerprint.slice(0, 12)}…`, r.added.slice(0, 19).replace('T', ' ')])]),
    );
  }
}
