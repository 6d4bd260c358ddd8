import { EnvCommand } from '../cli/base.js';
import { table } from '../cli/table.js';

export default class Status extends EnvCommand {
  static override summary = "The env's state, address, folders and ports.";

  async run(): Promise<void> {
    const { openEnv } = await import('../core/env.js');
    const { status } = await import('../core/lifecycle.js');
    const { flags } = await this.parse(Status);
    const { ensureAgent } = await import('../core/agent.js');
    const env = await openEnv(flags.envfile);
    const report = await status(env);
    // A dead agent is restarted here, but status itself never fails or waits long because of it.
    if (report.state === 'running') await ensureAgent(env, this.out).catch((err: Error) => this.out.warn(err.message));
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
