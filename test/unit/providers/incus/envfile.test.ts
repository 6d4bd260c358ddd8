import { describe, expect, it } from 'vitest';
import { check } from '../../../helpers/envfile.js';

describe('remote: in the Envfile', () => {
  it.each([
    ['a remote name', 'provider: incus\nremote: prod\nfolders: []\n', 'prod'],
    ['an added URL', 'provider: lxd\nremote: https://incus.example.com:8443\nfolders: []\n', 'https://incus.example.com:8443'],
    ['a socket', 'provider: incus\nremote: /var/lib/incus/unix.socket\n', '/var/lib/incus/unix.socket'],
    ['nothing (the local daemon)', 'provider: incus\n', undefined],
  ])('accepts %s', async (_what, yaml, remote) => {
    const { problems, config } = await check(yaml);
    expect(problems).toEqual([]);
    expect(config?.remote).toBe(remote);
  });

  it.each([
    [
      'provider: container\nremote: prod\n',
      'Envfile:2:9 remote: remote only applies to provider: incus or lxd — set provider: incus, or remove remote',
    ],
    [
      'provider: incus\nremote: "prod; rm -rf /"\n',
      'Envfile:2:9 remote: "prod; rm -rf /" is not a remote — use a name from env remote list, an https://HOST:PORT added with env remote add, or a unix socket path like /var/lib/incus/unix.socket',
    ],
    ['provider: incus\nremote: http://h:8443\n', expect.stringContaining('"http://h:8443" is not a remote')],
  ])('rejects %j', async (yaml, problem) => {
    expect((await check(yaml)).problems).toEqual([problem]);
  });
});
