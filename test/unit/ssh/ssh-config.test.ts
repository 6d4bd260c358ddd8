import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderSshConfig, writeSshConfigInclude, type SshConfigEntry } from '../../../src/ssh/index.js';
import { runOk } from '../../../src/util/exec.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox ssh-config '));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const entry = (over: Partial<SshConfigEntry> = {}): SshConfigEntry => ({
  alias: 'envbox-webapp-1a2b',
  hostName: '10.0.3.5',
  port: 22,
  user: 'dev',
  identityFile: '/home/me/.local/state/envbox/envs/webapp-1a2b/id_ed25519',
  knownHostsFile: '/home/me/.local/state/envbox/envs/webapp-1a2b/known_hosts',
  ...over,
});

/** What OpenSSH itself resolves for `alias` from the file: `ssh -G` prints the effective options. */
async function resolved(file: string, alias: string): Promise<Map<string, string>> {
  const { stdout } = await runOk('ssh', ['-G', '-F', file, alias]);
  return new Map(stdout.split('\n').filter(Boolean).map((line) => {
    const space = line.indexOf(' ');
    return [line.slice(0, space), line.slice(space + 1)] as [string, string];
  }));
}

describe('renderSshConfig', () => {
  it('writes one strict, pinned Host block per env', () => {
    expect(renderSshConfig([entry()])).toBe(
      [
        '# Written by envbox: rewritten whenever an env changes, so edits here are lost.',
        '',
        'Host envbox-webapp-1a2b',
        '  HostName 10.0.3.5',
        '  Port 22',
        '  User dev',
        '  IdentityFile "/home/me/.local/state/envbox/envs/webapp-1a2b/id_ed25519"',
        '  IdentitiesOnly yes',
        '  UserKnownHostsFile "/home/me/.local/state/envbox/envs/webapp-1a2b/known_hosts"',
        '  StrictHostKeyChecking yes',
        '  HostKeyAlias envbox-webapp-1a2b',
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    );
  });

  it('is read by OpenSSH as intended, paths with spaces and % included', async () => {
    const folder = join(dir, '100% env');
    const entries = [
      entry({ port: 2222, identityFile: join(folder, 'id_ed25519'), knownHostsFile: join(folder, 'known_hosts') }),
      entry({ alias: 'envbox-api-9f', hostName: '10.0.3.6', user: 'app' }),
    ];
    const controlDir = join(dir, 'cm');
    const file = join(dir, 'ssh_config');
    await writeSshConfigInclude(file, entries, { controlDir });
    const web = await resolved(file, 'envbox-webapp-1a2b');
    expect(web.get('hostname')).toBe('10.0.3.5');
    expect(web.get('port')).toBe('2222');
    expect(web.get('user')).toBe('dev');
    // ssh -G prints IdentityFile before %-expansion and UserKnownHostsFile after it.
    expect(web.get('identityfile')).toBe(join(folder, 'id_ed25519').replace('%', '%%'));
    expect(web.get('userknownhostsfile')).toBe(join(folder, 'known_hosts'));
    expect(web.get('stricthostkeychecking')).toBe('true');
    expect(web.get('hostkeyalias')).toBe('envbox-webapp-1a2b');
    expect(web.get('identitiesonly')).toBe('yes');
    expect(web.get('controlmaster')).toBe('auto');
    expect(web.get('controlpath')).toMatch(new RegExp(`^${controlDir}/[0-9a-f]{16}$`));
    const api = await resolved(file, 'envbox-api-9f');
    expect(api.get('hostname')).toBe('10.0.3.6');
    expect(api.get('user')).toBe('app');
    expect(api.get('controlpath')).not.toBe(web.get('controlpath'));
  });

  it('leaves connection sharing out when the socket path would not fit a unix socket', () => {
    expect(renderSshConfig([entry()], { controlDir: '/run/user/1000/envbox' })).toContain('ControlMaster auto');
    expect(renderSshConfig([entry()], { controlDir: `/tmp/${'x'.repeat(80)}` })).not.toContain('Control');
  });

  it.each([
    ['a newline in a path', { identityFile: '/a\nHost *\n  ProxyCommand evil' }],
    ['a NUL in a path', { knownHostsFile: '/a\0b' }],
    ['a quote in a path', { knownHostsFile: '/a"b' }],
    ['a newline in the user', { user: 'dev\nProxyCommand evil' }],
    ['a pattern as alias', { alias: 'envbox-*' }],
    ['a space in the host name', { hostName: '10.0.3.5 evil' }],
    ['port 0', { port: 0 }],
  ])('refuses %s', (_what, over) => {
    expect(() => renderSshConfig([entry(over)])).toThrow(expect.objectContaining({ code: 'SSH_CONFIG_INVALID' }));
  });
});

describe('writeSshConfigInclude', () => {
  it('writes 0600 and makes the control folder private', async () => {
    const file = join(dir, 'nested', 'ssh_config');
    const controlDir = join(dir, 'sockets');
    await writeSshConfigInclude(file, [entry()], { controlDir });
    expect(await readFile(file, 'utf8')).toBe(renderSshConfig([entry()], { controlDir }));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(controlDir)).mode & 0o777).toBe(0o700);
  });
});
