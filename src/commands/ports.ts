import { EnvCommand } from '../cli/base.js';
import { table } from '../cli/table.js';

export default class Ports extends EnvCommand {
  static override summary = "The env's port forwards: static, reverse and auto-detected, with their state and connections.";
  static override description =
    'Asks the env\'s agent what each forward is doing. Static forwards come from the Envfile\'s ports, reverse ones let the guest reach a host port, auto ones follow what the guest listens on (auto_ports).';

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { agentStatus } = await import('../core/agent.js');
    const { readPlan, planForwards } = await import('../core/ports.js');
    const { addressText } = await import('../agent/portfwd/spec.js');
    const { flags } = await this.parse(Ports);
    const env = await openCreatedEnv(flags.envfile);
    const status = await agentStatus(env);
    // Without an agent nothing is forwarded; show what would be, from the plan `env up` made.
    const forwards =
      status?.forwards ??
      ((await readPlan(env))?.forwards ?? planForwards(env.config.ports, []).forwards).map((f) => ({
        ...f,
        state: 'down' as const,
        connections: 0,
        total: 0,
        bytesIn: 0,
        bytesOut: 0,
      }));
    this.result({ name: env.config.name, agent: status ? { pid: status.pid, connection: status.connection } : null, forwards }, () => {
      const lines: string[] = [];
      if (!status) lines.push(`env "${env.config.name}" has no agent running, so nothing is forwarded (env up starts it)`);
      else if (status.connection.state !== 'connected') lines.push(`the agent is ${status.connection.state}: new connections fail until the guest is back`);
      if (forwards.length === 0) {
        lines.push(status?.autoPorts ? 'no forwards yet; ports the guest starts listening on will appear here' : 'no port forwards (add ports: to the Envfile)');
        return lines.join('\n');
      }
      const rows = forwards.map((f) => [
        f.kind,
        f.protocol,
        addressText(f.hostIp, f.hostPort) + (f.requestedHostPort ? ` (asked ${f.requestedHostPort})` : ''),
        f.kind === 'reverse' ? '←' : '→',
        addressText(f.guestIp, f.guestPort),
        f.state,
        String(f.connections),
      ]);
      lines.push(table([['KIND', 'PROTO', 'HOST', '', 'GUEST', 'STATE', 'CONNS'], ...rows]));
      for (const f of forwards) if ('message' in f && f.message) lines.push(`  ${f.kind} ${addressText(f.hostIp, f.hostPort)}: ${f.message}`);
      return lines.join('\n');
    });
  }
}
