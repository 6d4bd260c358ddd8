import { EnvCommand } from '../cli/base.js';

export default class AgentCommand extends EnvCommand {
  static override hidden = true;
  static override summary = "Run the env's background agent in the foreground (env up starts it detached).";
  static override description =
    'Holds the SSH connection, the port forwards and the SOCKS5 proxy, answers on a control socket and writes events (env logs). Stops on SIGTERM or when the guest stays stopped.';

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { runAgent } = await import('../core/agent.js');
    const { flags } = await this.parse(AgentCommand);
    const code = await runAgent(await openCreatedEnv(flags.envfile));
    // Everything is closed and the last event written (synchronously) by now: leave at once rather than
    // wait for handles a closed connection keeps for a while, so halt and destroy don't wait on them.
    process.exit(code);
  }
}
