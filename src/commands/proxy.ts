import { Args } from '@oclif/core';
import { EnvCommand } from '../cli/base.js';

export default class Proxy extends EnvCommand {
  static override summary = "The env's SOCKS5 proxy into the guest network: address, credentials, PAC file; or a browser that uses it.";
  static override description =
    "Through the proxy the host reaches every guest service by the guest's own names — the env's name and localhost are the guest itself — including services bound only to the guest's localhost. `env proxy browser [URL]` opens Chromium (or Firefox) with a throw-away profile that sends everything through it.";
  static override examples = [
    '<%= config.bin %> proxy',
    '<%= config.bin %> proxy --json',
    '<%= config.bin %> proxy browser',
    '<%= config.bin %> proxy browser http://localhost:3000/',
  ];
  static override args = {
    action: Args.string({ description: 'Open a browser that goes through the proxy.', options: ['browser'] }),
    url: Args.string({ description: 'The page the browser opens (default: the first forwarded port).' }),
  };

  async run(): Promise<void> {
    const { openCreatedEnv } = await import('../core/env.js');
    const { agentStatus } = await import('../core/agent.js');
    const { EnvboxError } = await import('../util/errors.js');
    const { args, flags } = await this.parse(Proxy);
    const env = await openCreatedEnv(flags.envfile);
    if (env.config.proxy.socks === false) {
      throw new EnvboxError('PROXY_DISABLED', `env "${env.config.name}" has its proxy turned off (proxy.socks: false)`, {
        hint: 'set proxy: { socks: auto } in the Envfile and run env up',
      });
    }
    const status = await agentStatus(env);
    if (!status?.proxy) {
      throw new EnvboxError('PROXY_NOT_RUNNING', `env "${env.config.name}" has no proxy running`, {
        hint: status ? 'env logs says why the proxy did not start' : 'env up starts the agent that serves it',
      });
    }
    const { proxy } = status;
    const name = env.config.name;
    if (args.action === 'browser') {
      if (proxy.auth) {
        throw new EnvboxError('PROXY_AUTH_BROWSER', 'browsers cannot log in to a SOCKS5 proxy, and this one asks for a password', {
          hint: 'set proxy: { auth: false } in the Envfile (the proxy listens on 127.0.0.1 only), then env up',
        });
      }
      const first = status.forwards.find((f) => f.kind !== 'reverse' && f.protocol === 'tcp');
      const url = args.url ?? (first ? `http://${name}:${first.guestPort}/` : `http://${name}/`);
      const { runProxyBrowser } = await import('../core/agent.js');
      this.out.info(`opening ${url} in a browser that goes through ${proxy.address} (its profile is removed when it closes)`);
      process.exitCode = await runProxyBrowser(proxy.port, url);
      return;
    }
    const user = proxy.auth ? `${encodeURIComponent(proxy.auth.username)}:${encodeURIComponent(proxy.auth.password)}@` : '';
    const example = status.forwards.find((f) => f.kind !== 'reverse' && f.protocol === 'tcp')?.guestPort ?? 8000;
    this.result({ name, proxy, url: `socks5h://${user}${proxy.address}` }, () =>
      [
        `SOCKS5 proxy into env "${name}": ${proxy.address}${proxy.auth ? ` (user ${proxy.auth.username}, password ${proxy.auth.password})` : ''}`,
        `PAC file: ${proxy.pacUrl} (sends ${name}, *.${name} and ${env.record.machine!.address} through the proxy, the rest direct)`,
        '',
        `Names resolve inside the guest; "${name}" and "localhost" are the guest itself:`,
        `  curl --socks5-hostname ${proxy.address}${proxy.auth ? ` --proxy-user ${proxy.auth.username}:${proxy.auth.password}` : ''} http://${name}:${example}/`,
        `  chromium --proxy-server=socks5://${proxy.address} --proxy-bypass-list='<-loopback>' --user-data-dir=$(mktemp -d)`,
        `  chromium --proxy-pac-url=${proxy.pacUrl}`,
        `  env proxy browser [URL]    a throw-away browser that uses it`,
      ].join('\n'),
    );
  }
}
