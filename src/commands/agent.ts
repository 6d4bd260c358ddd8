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
    process.exitCode = code;
    // Everything is closed by now; should a stray handle remain, it must not keep a stopped agent alive.
    setTimeout(() => process.exit(code), 1_000).unref();
  }
}
