/**
 * `env proxy browser`: a browser of its own (fresh, throw-away profile) that sends everything
 * through the env's SOCKS5 proxy with names resolved in the guest, localhost included, so
 * http://localhost:3000 in it is the guest's port 3000. The user's own browser profile is untouched.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvboxError } from '../util/errors.js';
import { findOnPath } from '../util/exec.js';

export type BrowserKind = 'chromium' | 'firefox';

const CANDIDATES: [string, BrowserKind][] = [
  ['chromium', 'chromium'],
  ['chromium-browser', 'chromium'],
  ['google-chrome-stable', 'chromium'],
  ['google-chrome', 'chromium'],
  ['firefox', 'firefox'],
  ['firefox-esr', 'firefox'],
];

/**
 * Chromium flags: socks5:// makes it send host names to the proxy unresolved, and `<-loopback>`
 * undoes its rule that localhost never goes through a proxy. As root it only starts without its
 * sandbox.
 */
export function chromiumArgs(proxyPort: number, profile: string, url: string, root = process.getuid?.() === 0): string[] {
  return [
    `--user-data-dir=${profile}`,
    '--no-first-run',
    '--no-default-browser-check',
    `--proxy-server=socks5://127.0.0.1:${proxyPort}`,
    '--proxy-bypass-list=<-loopback>',
    ...(root ? ['--no-sandbox'] : []),
    url,
  ];
}

/** Firefox reads these from the profile's user.js: the same routing as the Chromium flags. */
export function firefoxPrefs(proxyPort: number): string {
  const prefs: [string, string | number | boolean][] = [
    ['network.proxy.type', 1],
    ['network.proxy.socks', '127.0.0.1'],
    ['network.proxy.socks_port', proxyPort],
    ['network.proxy.socks_version', 5],
    ['network.proxy.socks_remote_dns', true],
    ['network.proxy.allow_hijacking_localhost', true],
    ['network.proxy.no_proxies_on', ''],
    ['browser.shell.checkDefaultBrowser', false],
    ['browser.aboutwelcome.enabled', false],
  ];
  return prefs.map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});\n`).join('');
}

export async function findBrowser(path = process.env.PATH ?? ''): Promise<{ program: string; kind: BrowserKind } | undefined> {
  for (const [name, kind] of CANDIDATES) {
    const program = findOnPath(name, path);
    if (program) return { program, kind };
  }
  return undefined;
}

/** Runs the browser until it exits, then removes its profile; resolves with its exit status. */
export async function runProxyBrowser(proxyPort: number, url: string): Promise<number> {
  const browser = await findBrowser();
  if (!browser) {
    throw new EnvboxError('BROWSER_MISSING', 'no Chromium or Firefox found on the PATH', {
      hint: `install chromium (apt-get install chromium), or point any browser at socks5://127.0.0.1:${proxyPort} with remote DNS`,
    });
  }
  const profile = await mkdtemp(join(tmpdir(), 'envbox-browser-'));
  // Ctrl-C reaches the browser too (same process group); the profile is removed once it has gone.
  const ignore = () => {};
  process.on('SIGINT', ignore);
  try {
    let args: string[];
    if (browser.kind === 'chromium') args = chromiumArgs(proxyPort, profile, url);
    else {
      await writeFile(join(profile, 'user.js'), firefoxPrefs(proxyPort));
      args = ['--no-remote', '--new-instance', '--profile', profile, url];
    }
    return await new Promise<number>((resolve, reject) => {
      const child = spawn(browser.program, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
  } finally {
    process.off('SIGINT', ignore);
    await rm(profile, { recursive: true, force: true });
  }
}
