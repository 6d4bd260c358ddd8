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
        const lag = (f: (typeof report.folders)[number]) => (f.lagMs === null ? '-' : `${f.lagMs} ms`);
        lines.push(
          '',
          table([
            ['FOLDER', 'GUEST', 'MODE', 'EVENTS', 'STATE', 'PENDING', 'LAG'],
            ...report.folders.map((f) => [f.host, f.guest, f.mode, f.events, f.state + (f.via === 'sftp' ? ' (via sftp: envbox-guest not running)' : ''), String(f.pending), lag(f)]),
          ]),
        );
        for (const f of report.folders) if (f.problem) lines.push(`  ${f.guest}: ${f.problem}`);
      }
      return lines.join('\n');
    });
  }
}
