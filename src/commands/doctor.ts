import { EnvCommand } from '../cli/base.js';
import type { HostCheck } from '../providers/provider.js';

export default class Doctor extends EnvCommand {
  static override summary = 'What this host has and lacks, per provider, and the command that fixes each gap.';

  async run(): Promise<void> {
    const { getProvider, providerNames } = await import('../providers/registry.js');
    await this.parse(Doctor);
    const providers: { provider: string; checks: HostCheck[] }[] = [];
    for (const name of providerNames()) {
      const provider = await getProvider(name);
      providers.push({ provider: name, checks: await provider.checkHost() });
    }
    const ok = providers.every((p) => p.checks.every((c) => c.ok));
    this.result({ healthy: ok, providers }, () =>
      providers
        .map((p) =>
          [`${p.provider}:`, ...p.checks.map((c) => `  ${c.ok ? this.out.paint('green', 'ok  ') : this.out.paint('red', 'MISS')} ${c.name}: ${c.detail}${c.ok || !c.fix ? '' : `\n       fix: ${c.fix}`}`)].join('\n'),
        )
        .join('\n\n'),
    );
  }
}
