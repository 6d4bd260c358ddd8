import { describe, expect, it } from 'vitest';
import { cpusetFor, fstabEscape, lxcConfig, type HostFacts } from '../../../../src/providers/lxc/config.js';
import { envPaths, type LxcMachine } from '../../../../src/providers/lxc/layout.js';
import type { GuestSpec } from '../../../../src/providers/provider.js';
import { EnvboxError } from '../../../../src/util/errors.js';

const spec = (over: Partial<GuestSpec> = {}): GuestSpec => ({
  id: 'webapp-1a2b3c4d',
  hostname: 'webapp',
  stateDir: '/state/envs/webapp-1a2b3c4d',
  rootfs: '/cache/images/k/rootfs',
  user: { name: 'dev', uid: 1000, gid: 1000, hostUid: 0, hostGid: 0, home: '/home/dev', authorizedKey: 'ssh-ed25519 AAAA dev' },
  folders: [{ host: '/srv/webapp', guest: '/home/dev/project' }],
  network: { outbound: false },
  ...over,
});

const machine = (over: Partial<LxcMachine> = {}): LxcMachine => ({
  address: '10.71.0.2',
  provider: 'lxc',
  bridge: 'envbox0',
  gateway: '10.71.0.1',
  veth: 'ebx0123456789ab',
  idmapSlot: 1,
  idmapBase: 0x48010000,
  rootfsMode: 'overlay',
  image: '/cache/images/k/rootfs',
  ...over,
});

const v2: HostFacts = { apparmor: false, cgroup: 2, cpuCount: 4 };
const render = (s = spec(), m = machine(), host = v2, systemd = true) => lxcConfig(s, m, envPaths(s), host, { systemd });
const keys = (text: string) => text.split('\n').filter((l) => l && !l.startsWith('#'));

describe('lxcConfig', () => {
  it('writes the whole config for an overlay env', () => {
    expect(keys(render(spec({ cpus: 2, memoryBytes: 2 ** 31 })))).toEqual([
      'lxc.include = /usr/share/lxc/config/common.conf',
      'lxc.include = /usr/share/lxc/config/userns.conf',
      'lxc.arch = linux64',
      'lxc.uts.name = webapp',
      'lxc.rootfs.path = dir:/run/envbox/mnt/webapp-1a2b3c4d/rootfs',
      `lxc.idmap = u 0 ${0x48010000} 65536`,
      `lxc.idmap = g 0 ${0x48010000} 65536`,
      'lxc.apparmor.profile = unconfined',
      'lxc.signal.halt = SIGRTMIN+3',
      'lxc.log.file = /state/envs/webapp-1a2b3c4d/lxc/lxc.log',
      'lxc.log.level = WARN',
      'lxc.console.logfile = /state/envs/webapp-1a2b3c4d/lxc/console.log',
      'lxc.start.auto = 0',
      'lxc.net.0.type = veth',
      'lxc.net.0.link = envbox0',
      'lxc.net.0.veth.pair = ebx0123456789ab',
      'lxc.net.0.name = eth0',
      expect.stringMatching(/^lxc\.net\.0\.hwaddr = 0a(:[0-9a-f]{2}){5}$/),
      'lxc.net.0.flags = up',
      'lxc.net.0.ipv4.address = 10.71.0.2/24',
      'lxc.net.0.ipv4.gateway = 10.71.0.1',
      `lxc.hook.start-host = /bin/sh -c 'nsenter --net="/proc/$LXC_PID/ns/net" ip route replace 10.71.0.0/24 dev eth0 proto kernel scope link src 10.71.0.2 quickack 1 || :'`,
      'lxc.mount.entry = /run/envbox/mnt/webapp-1a2b3c4d/folders/0 home/dev/project none bind,create=dir 0 0',
      'lxc.cgroup2.cpuset.cpus = 2,3',
      `lxc.cgroup2.memory.max = ${2 ** 31}`,
    ]);
  });

  const table: [string, Parameters<typeof render>, string[], string[]][] = [
    ['AppArmor present keeps LXC generated profile', [spec(), machine(), { ...v2, apparmor: true }], ['lxc.apparmor.profile = generated'], ['unconfined']],
    ['cgroup v1 limits', [spec({ cpus: 1, memoryBytes: 512 }), machine(), { ...v2, cgroup: 1 }], ['lxc.cgroup.cpuset.cpus = 1', 'lxc.cgroup.memory.limit_in_bytes = 512'], ['lxc.cgroup2.']],
    ['no limits asked, none written', [spec(), machine(), v2], [], ['cpuset', 'memory']],
    ['cpus ≥ host CPUs: no cpuset', [spec({ cpus: 8 }), machine(), v2], [], ['cpuset']],
    ['non-systemd init keeps the default halt signal', [spec(), machine(), v2, false], [], ['lxc.signal.halt']],
    [
      'copy mode: LXC idmaps rootfs and folders itself',
      [spec({ folders: [{ host: '/home/me/my project', guest: '/home/dev/my project' }] }), machine({ rootfsMode: 'copy' }), v2],
      ['lxc.rootfs.options = idmap=container', 'lxc.mount.entry = /run/envbox/mnt/webapp-1a2b3c4d/folders/0 home/dev/my\\040project none bind,create=dir,idmap=container 0 0'],
      [],
    ],
    ['no folders, no mount entries', [spec({ folders: [] }), machine(), v2], [], ['lxc.mount.entry']],
  ];
  it.each(table)('%s', (_name, args, present, absent) => {
    const text = render(...args);
    for (const line of present) expect(keys(text)).toContain(line);
    for (const fragment of absent) expect(text).not.toContain(fragment);
  });

  const bad: [string, GuestSpec][] = [
    ['newline in hostname', spec({ hostname: 'web\nlxc.init.cmd = /bin/evil' })],
    ['carriage return in hostname', spec({ hostname: 'web\r' })],
    ['NUL in a guest folder', spec({ folders: [{ host: '/srv/a', guest: '/home/dev/a\0b' }] })],
    ['newline in a guest folder', spec({ folders: [{ host: '/srv/a', guest: '/home/dev/a\nlxc.x = 1' }] })],
    ['relative guest folder', spec({ folders: [{ host: '/srv/a', guest: 'project' }] })],
    ['guest folder /', spec({ folders: [{ host: '/srv/a', guest: '/' }] })],
    ['fractional memory', spec({ memoryBytes: 1.5 })],
  ];
  it.each(bad)('rejects %s', (_name, s) => {
    expect(() => render(s)).toThrow(EnvboxError);
  });

  it('puts only a plain IPv4 address into the start hook it runs with a shell', () => {
    expect(() => render(spec(), machine({ address: "10.71.0.2'; reboot; '" }))).toThrow(EnvboxError);
    expect(() => render(spec(), machine({ address: '10.71.0' }))).toThrow(EnvboxError);
  });

  it('values outside mount entries keep their spaces (LXC takes the rest of the line)', () => {
    const s = spec({ stateDir: '/state dir/webapp' });
    expect(keys(render(s))).toContain('lxc.log.file = /state dir/webapp/lxc/lxc.log');
  });

  it('refuses an env id that is not a plain name', () => {
    expect(() => render(spec({ id: '../etc' }))).toThrow(EnvboxError);
  });
});

describe('fstabEscape', () => {
  it.each([
    ['/plain/path', '/plain/path'],
    ['/with space', '/with\\040space'],
    ['/tab\there', '/tab\\011here'],
    ['/back\\slash', '/back\\134slash'],
    ['/a  b', '/a\\040\\040b'],
  ])('%j -> %j', (input, expected) => {
    expect(fstabEscape(input)).toBe(expected);
  });
});

describe('cpusetFor', () => {
  it.each([
    [0, 1, 4, '0'],
    [1, 1, 4, '1'],
    [1, 2, 4, '2,3'],
    [2, 2, 4, '0,1'],
    [1, 3, 4, '0,1,3'],
    [0, 4, 4, undefined],
    [0, undefined, 4, undefined],
  ])('slot %i, %s cpus of %i -> %s', (slot, cpus, count, expected) => {
    expect(cpusetFor(slot, cpus, count)).toBe(expected);
  });
});
