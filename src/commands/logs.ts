import { Flags } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';

export default class Logs extends EnvCommand {
  static override summary = "What the env's agent did: connections, forwards, detected ports, the proxy.";
  static override description = 'One line per event from the agent\'s log; -f keeps printing new ones until Ctrl-C. With --json, a list (or one JSON object per line with -f).';
  static override examples = ['<%= config.bin %> logs', '<%= config.bin %> logs -f', '<%= config.bin %> logs -n 20 --json'];
  static override flags = {
    follow: Flags.boolean({ char: 'f', description: 'Keep printing events as they happen.' }),
    lines: Flags.integer({ char: 'n', description: 'Only the last N events.', min: 0 }),
  };

  async run(): Promise<void> {
    const { openEnv } = await import('../core/env.js');
    const { agentFiles } = await import('../core/agent.js');
    const { followEvents, formatEvent, readEvents } = await import('../agent/events.js');
    const { flags } = await this.parse(Logs);
    const env = await openEnv(flags.envfile);
    const file = agentFiles(env.dir).events;
    const { events, offset } = await readEvents(file);
    const shown = flags.lines === undefined ? events : events.slice(Math.max(0, events.length - flags.lines));
    const line = (e: (typeof events)[number]) => (this.out.json ? JSON.stringify(e) : formatEvent(e));
    if (!flags.follow) {
      this.result({ name: env.config.name, events: shown }, () =>
        shown.length ? shown.map(line).join('\n') : `env "${env.config.name}" has no agent events yet (env up starts its agent)`,
      );
      return;
    }
    for (const e of shown) process.stdout.write(`${line(e)}\n`);
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    await followEvents(file, offset, (e) => void process.stdout.write(`${line(e)}\n`), { signal: stop.signal, pollMs: 200 });
  }
}
