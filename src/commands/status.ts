import { EnvCommand } from '../cli/base.js';
import { table } from '../cli/table.js';

export default class Status extends EnvCommand {
  static override summary = "The env's state, address, folders and ports.";

  async run(): Promise<void> {
    const { openEnv } = await import('../core/env.js');
    const { status } = await import('../core/lifecycle.js');
    const { flags } = await this.parse(Status);
    const report = await status(await openEnv(flags.envfile));
    this.result({ env: report }, () => {
      const lines = [
        `${report.name} (${report.id}): ${report.state}${report.address ? ` at ${report.address}` : ''}`,
        `  provider ${report.provider}, image ${report.image ?? '-'}, user ${report.user}`,
        `  Envfile ${report.envfile}`,
      ];
      if (report.folders.length) {
        lines.push('', table([['FOLDER', 'GUEST', 'MODE', 'EVENTS'], ...report.folders.map((f) => [f.host, f.guest, f.mode, f.events])]));
      }
      return lines.join('\n');
    });
  }
}
