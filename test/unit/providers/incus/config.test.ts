import { describe, expect, it } from 'vitest';
import {
  folderSharing,
  instanceBody,
  instanceName,
  listenAddress,
  pickSshPort,
  publishedPorts,
  type InstancePlan,
} from '../../../../src/providers/incus/config.js';
import type { GuestSpec, GuestUser } from '../../../../src/providers/provider.js';

const user = (over: Partial<GuestUser> = {}): GuestUser => ({
  name: 'dev',
  uid: 1000,
  gid: 1000,
  hostUid: 1000,
  hostGid: 1000,
  home: '/home/dev',
  authorizedKey: 'ssh-ed25519 AAAA dev',
  ...over,
});

const spec = (over: Partial<GuestSpec> = {}): GuestSpec => ({
  id: 'webapp-1a2b3c4d',
  hostname: 'webapp',
  stateDir: '/state/envs/webapp-1a2b3c4d',
  rootfs: '/cache/images/k/rootfs',
  user: user(),
  folders: [{ host: '/srv/webapp', guest: '/home/dev/project/' }],
  network: { outbound: false },
  ...over,
});

const plan = (over: Partial<InstancePlan> = {}): InstancePlan => ({
  name: 'envbox-webapp-0badc0de',
  fingerprint: 'f'.repeat(64),
  sharing: { mode: 'shift' },
  ssh: { address: '127.0.0.1', port: 20022 },
  profileNics: ['eth0'],
  clientHost: 'laptop',
  ...over,
});

describe('instanceBody', () => {
  it('maps a local env: isolated idmap, limits, shifted folder, sshd through a proxy, no NIC without outbound', () => {
    expect(instanceBody(spec({ cpus: 2, memoryBytes: 2 ** 31 }), plan())).toEqual({
      name: 'envbox-webapp-0badc0de',
      type: 'container',
      source: { type: 'image', fingerprint: 'f'.repeat(64) },
      profiles: ['default'],
      config: {
        'security.idmap.isolated': 'true',
        'user.envbox.id': 'webapp-1a2b3c4d',
        'user.envbox.host': 'laptop',
        'limits.cpu': '2',
        'limits.memory': '2048MiB',
      },
      devices: {
        'envbox-ssh': { type: 'proxy', bind: 'host', listen: 'tcp:127.0.0.1:20022', connect: 'tcp:127.0.0.1:22' },
        'envbox-folder-0': { type: 'disk', source: '/srv/webapp', path: '/home/dev/project', shift: 'true' },
        eth0: { type: 'none' },
      },
    });
  });

  it.each([
    ['outbound keeps the profile NICs', spec({ network: { outbound: true }, folders: [] }), plan({ sharing: { mode: 'none' } }), { config: {}, devices: ['envbox-ssh'] }],
    [
      'raw.idmap sharing: no shift, the map in the config',
      spec(),
      plan({ sharing: { mode: 'raw.idmap', rawIdmap: 'uid 1001 1000\ngid 1001 1000' } }),
      { config: { 'raw.idmap': 'uid 1001 1000\ngid 1001 1000' }, devices: ['envbox-ssh', 'envbox-folder-0', 'eth0'] },
    ],
    [
      'a remote: the proxy listens on the daemon host, every NIC removed',
      spec({ folders: [] }),
      plan({ ssh: { address: '192.0.2.10', port: 24000 }, profileNics: ['eth0', 'eth1'], sharing: { mode: 'none' } }),
      { config: {}, devices: ['envbox-ssh', 'eth0', 'eth1'] },
    ],
  ])('%s', (_name, s, p, expected) => {
    const body = instanceBody(s, p);
    expect(body.config).toMatchObject(expected.config);
    expect(Object.keys(body.devices)).toEqual(expected.devices);
    expect(Object.values(body.devices).some((d) => d.shift)).toBe(p.sharing.mode === 'shift' && s.folders.length > 0);
  });

  it('rejects a guest user a 65536-id container cannot have', () => {
    expect(() => instanceBody(spec({ user: user({ uid: 70000 }) }), plan())).toThrow(/uid 70000 can't be used/);
  });

  it('rejects a relative folder path', () => {
    expect(() => instanceBody(spec({ folders: [{ host: 'srv', guest: '/x' }] }), plan())).toThrow(/must be absolute/);
  });

  it('publishes on IPv6 addresses in brackets', () => {
    expect(listenAddress('::1', 20022)).toBe('tcp:[::1]:20022');
    expect(listenAddress('10.0.0.2', 20022)).toBe('tcp:10.0.0.2:20022');
  });
});

describe('folderSharing', () => {
  const folders = [{ host: '/srv/p', guest: '/home/dev/p' }];
  it.each([
    ['no folders', user({ hostUid: 0, hostGid: 0 }), [], true, { mode: 'none' }],
    ['same ids, idmapped mounts', user(), folders, true, { mode: 'shift' }],
    ['same ids, no idmapped mounts (LXD 5.0)', user(), folders, false, { mode: 'raw.idmap', rawIdmap: 'uid 1000 1000\ngid 1000 1000' }],
    ['host owner with another uid', user({ hostUid: 500, hostGid: 500 }), folders, true, { mode: 'raw.idmap', rawIdmap: 'uid 500 1000\ngid 500 1000' }],
    ['host group root is not mapped', user({ hostUid: 1500, hostGid: 0, uid: 1500 }), folders, false, { mode: 'raw.idmap', rawIdmap: 'uid 1500 1500' }],
  ])('%s', (_name, u, f, idmapped, expected) => {
    expect(folderSharing(u, f, idmapped)).toEqual(expected);
  });

  it('never maps host root into a guest', () => {
    expect(() => folderSharing(user({ hostUid: 0, hostGid: 0 }), folders, true)).toThrow(/belongs to root/);
  });
});

describe('instanceName', () => {
  it('is a valid Incus name, per env and per client host', () => {
    const a = instanceName('webapp-1a2b3c4d', 'laptop');
    expect(a).toMatch(/^envbox-webapp-[0-9a-f]{8}$/);
    expect(instanceName('webapp-1a2b3c4d', 'laptop')).toBe(a);
    expect(instanceName('webapp-1a2b3c4d', 'desktop')).not.toBe(a);
    expect(instanceName('webapp-99999999', 'laptop')).not.toBe(a);
  });

  it('stays within 63 characters and never ends a part with a hyphen', () => {
    const long = instanceName(`${'a'.repeat(39)}-b${'c'.repeat(22)}-1a2b3c4d`, 'h');
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^envbox-a{39}-[0-9a-f]{8}$/);
  });
});

describe('SSH ports', () => {
  it('collects the ports proxy devices publish', () => {
    const instances = [
      { expanded_devices: { ssh: { type: 'proxy', listen: 'tcp:127.0.0.1:20022' }, root: { type: 'disk', path: '/' } } },
      { devices: { web: { type: 'proxy', listen: 'tcp:[::1]:28080' } } },
      {},
    ];
    expect(publishedPorts(instances)).toEqual(new Set([20022, 28080]));
  });

  it('picks a free port in range, skipping taken ones and wrapping around', () => {
    expect(pickSshPort(new Set(), () => 0)).toBe(20000);
    expect(pickSshPort(new Set([20000, 20001]), () => 0)).toBe(20002);
    expect(pickSshPort(new Set([29999]), () => 0.99999)).toBe(20000);
    const all = new Set(Array.from({ length: 10000 }, (_, i) => 20000 + i));
    expect(pickSshPort(all)).toBeUndefined();
  });
});
