import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { chromiumArgs, findBrowser, firefoxPrefs } from '../../../src/agent/browser.js';

describe('the proxy browser', () => {
  it('gives Chromium a fresh profile, the proxy with remote DNS, and loopback through it', () => {
    expect(chromiumArgs(1080, '/tmp/p', 'http://webapp:8000/', false)).toEqual([
      '--user-data-dir=/tmp/p',
      '--no-first-run',
      '--no-default-browser-check',
      '--proxy-server=socks5://127.0.0.1:1080',
      '--proxy-bypass-list=<-loopback>',
      'http://webapp:8000/',
    ]);
    expect(chromiumArgs(1080, '/tmp/p', 'http://x/', true)).toContain('--no-sandbox');
  });

  it('writes Firefox prefs with remote DNS and localhost through the proxy', () => {
    const prefs = firefoxPrefs(1080);
    expect(prefs).toContain('user_pref("network.proxy.socks_port", 1080);');
    expect(prefs).toContain('user_pref("network.proxy.socks_remote_dns", true);');
    expect(prefs).toContain('user_pref("network.proxy.allow_hijacking_localhost", true);');
  });

  it('prefers Chromium on the PATH, then Firefox', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envbox-browser-test-'));
    try {
      expect(await findBrowser(dir)).toBeUndefined();
      await writeFile(join(dir, 'firefox'), '#!/bin/sh\n');
      await chmod(join(dir, 'firefox'), 0o755);
      expect(await findBrowser(dir)).toEqual({ program: join(dir, 'firefox'), kind: 'firefox' });
      await writeFile(join(dir, 'chromium'), '#!/bin/sh\n');
      await chmod(join(dir, 'chromium'), 0o755);
      expect(await findBrowser(dir)).toEqual({ program: join(dir, 'chromium'), kind: 'chromium' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
