import { describe, expect, it } from 'vitest';
import { check } from '../../helpers/envfile.js';

// Each case: an Envfile and the exact problems it must produce, positions included.
const CASES: { name: string; yaml: string; problems: string[]; files?: Record<string, string>; isRoot?: boolean }[] = [
  { name: 'an empty file is a valid Envfile', yaml: '', problems: [] },
  {
    name: 'misspelt top-level key',
    yaml: 'name: web\nprovder: container\n',
    problems: ['Envfile:2:1 provder: unknown key "provder" — did you mean "provider"?'],
  },
  {
    name: 'unknown key without a near match lists the known ones',
    yaml: 'ports:\n  - { guest: 80, zzz: 1 }\n',
    problems: ['Envfile:2:18 ports[0].zzz: unknown key "zzz" — remove it; known keys here: guest, host, host_ip, guest_ip, protocol, auto_correct, reverse'],
    isRoot: true,
  },
  {
    name: 'wrong type',
    yaml: 'cpus: two\n',
    problems: ['Envfile:1:7 cpus: expected a whole number of CPUs'],
  },
  {
    name: 'provider misspelt',
    yaml: 'provider: contaner\n',
    problems: ['Envfile:1:11 provider: "contaner" is not one of container, vm, incus, lxd — did you mean "container"?'],
  },
  {
    name: 'sizes',
    yaml: 'memory: 2 Gigs\ndisk: 512M\n',
    problems: [
      'Envfile:1:9 memory: "2 Gigs" is not a size — write it like 2GiB, 512M or 1.5G',
    ],
  },
  {
    name: 'memory too small',
    yaml: 'memory: 1M\n',
    problems: ['Envfile:1:9 memory: "1M" is too small for memory — use at least 64MiB'],
  },
  {
    name: 'ports out of range, both forms',
    yaml: 'ports:\n  - 0\n  - 70000\n  - { guest: 3000, host: 65536 }\n',
    problems: [
      'Envfile:2:5 ports[0]: 0 is not a port — use a number from 1 to 65535',
      'Envfile:3:5 ports[1]: 70000 is not a port — use a number from 1 to 65535',
      'Envfile:4:26 ports[2].host: 65536 is not a port — use a number from 1 to 65535',
    ],
  },
  {
    name: 'the same host port twice',
    yaml: 'ports:\n  - 8000\n  - { guest: 9000, host: 8000 }\n',
    problems: ['Envfile:3:26 ports[1].host: host port 8000 is already used by ports[0] — give each forward its own host port'],
  },
  {
    name: 'same port number on udp and tcp is fine',
    yaml: 'ports:\n  - 5353\n  - { guest: 5353, protocol: udp }\n',
    problems: [],
  },
  {
    name: 'host ports below 1024 need root',
    yaml: 'ports:\n  - 80\n',
    problems: ['Envfile:2:5 ports[0]: host port 80 is below 1024 and needs root — pick a host port ≥ 1024, e.g. { guest: 80, host: 8080 }'],
  },
  { name: 'root may bind low ports', yaml: 'ports:\n  - 80\n', problems: [], isRoot: true },
  {
    name: 'a port entry of the wrong shape',
    yaml: 'ports:\n  - "eighty"\n',
    problems: ['Envfile:2:5 ports[0]: expected a port number or a mapping like { guest: 3000, host: 3001 }, got the text "eighty" — see Envfile.example'],
  },
  {
    name: 'a port mapping without its guest port',
    yaml: 'ports:\n  - { host: 3000 }\n',
    problems: ['Envfile:2:5 ports[0].guest: is required — add a port number from 1 to 65535'],
  },
  {
    name: 'folders that escape the project or do not exist, relative guest path',
    yaml: 'folders:\n  - host: ../elsewhere\n    guest: /srv\n  - host: missing\n    guest: srv\n',
    problems: [
      'Envfile:2:11 folders[0].host: ../elsewhere is outside the project folder — use a path inside PROJECT',
      'Envfile:4:11 folders[1].host: missing does not exist — create the folder or fix the path (relative to the Envfile)',
      'Envfile:5:12 folders[1].guest: "srv" is not an absolute guest path — start it with /, e.g. /home/dev/project',
    ],
  },
  {
    name: 'a folder that is a file',
    yaml: 'folders:\n  - { host: notes.txt, guest: /srv/notes }\n',
    files: { 'notes.txt': 'x' },
    problems: ['Envfile:2:13 folders[0].host: notes.txt is a file, not a folder — share the folder that holds it'],
  },
  {
    name: 'a guest system folder',
    yaml: 'folders:\n  - { host: ., guest: /etc }\n',
    problems: ['Envfile:2:23 folders[0].guest: /etc is a system folder of the guest — mount the folder somewhere like /home/dev/project'],
  },
  {
    name: 'names that are not host names',
    yaml: 'name: My_App\n',
    problems: ['Envfile:1:7 name: "My_App" is not a valid host name — use 1–63 lowercase letters, digits and inner hyphens'],
  },
  {
    name: 'newline in a value that reaches a config',
    yaml: 'env:\n  GREETING: "hello\\nworld"\nuser: "dev\\nroot"\n',
    problems: [
      'Envfile:2:13 env.GREETING: the value contains a line break or NUL — write it on one line',
      'Envfile:3:7 user: the user contains a line break or NUL — write it on one line',
    ],
  },
  {
    name: 'NUL in a shell step; newlines are fine there',
    yaml: 'provision:\n  - shell: "echo a\\necho b"\n  - shell: "echo \\0"\n',
    problems: ['Envfile:3:12 provision[1].shell: the script contains a NUL byte — remove it'],
  },
  {
    name: 'a provision step with a bad run value',
    yaml: 'provision:\n  - shell: echo hi\n    run: sometimes\n',
    problems: ['Envfile:3:10 provision[0].run: "sometimes" is not one of once, always, never — use one of those'],
  },
  {
    name: 'a provision step with no kind',
    yaml: 'provision:\n  - run: always\n',
    problems: ['Envfile:2:5 provision[0]: expected exactly one of shell:, script: or file: in this step — e.g. - shell: apt-get install -y git'],
  },
  {
    name: 'provision files must exist inside the project',
    yaml: 'provision:\n  - script: setup.sh\n  - file: { from: /etc/passwd, to: /tmp/p }\n',
    problems: [
      'Envfile:2:13 provision[0].script: setup.sh does not exist — create the script or fix the path (relative to the Envfile)',
      'Envfile:3:19 provision[1].file.from: /etc/passwd is outside the project folder — use a path inside PROJECT',
    ],
  },
  {
    name: 'a bad variable name',
    yaml: 'env:\n  "1X": a\n',
    problems: ['Envfile:2:3 env.1X: "1X" is not a variable name — use letters, digits and _'],
  },
  {
    name: 'image names and packages',
    yaml: 'image: { from: "Debian Bookworm", packages: ["git; rm -rf /"] }\n',
    problems: [
      'Envfile:1:16 image.from: "Debian Bookworm" is not an image name — use a recipe name like debian/bookworm (see env image list)',
      'Envfile:1:46 image.packages[0]: "git; rm -rf /" is not a Debian package name — use names like git or python3-venv',
    ],
  },
  {
    name: 'an image that is neither a recipe nor imported',
    yaml: 'image: debian/bookwork\n',
    problems: [
      'Envfile:1:8 image: unknown image "debian/bookwork" — did you mean debian/bookworm?; use one of: debian/bookworm, node/bookworm, postgres/bookworm, python/bookworm (or add one with env image import)',
    ],
  },
  {
    name: 'YAML syntax errors are positioned',
    yaml: 'name: web\nports: [8000\n',
    problems: ['Envfile:3:1 Flow sequence in block collection must be sufficiently indented and end with a ] — fix the YAML syntax'],
  },
  {
    name: 'duplicate keys',
    yaml: 'name: a\nname: b\n',
    problems: ['Envfile:2:1 Map keys must be unique — fix the YAML syntax'],
  },
  {
    name: 'not a mapping',
    yaml: '- a\n- b\n',
    problems: ['Envfile:1:1 the Envfile must be a mapping of keys — see Envfile.example'],
  },
];

describe('Envfile validation', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const { problems, dir } = await check(c.yaml, { files: c.files, isRoot: c.isRoot });
      expect(problems.map((p) => p.replaceAll(dir, 'PROJECT'))).toEqual(c.problems);
    });
  }

  it('reports five different mistakes at once, each at its own line:col', async () => {
    const yaml = [
      'name: Web_App', //           1: bad host name
      'provder: container', //      2: unknown key
      'memory: lots', //            3: bad size
      'ports:',
      '  - 99999', //               5: port out of range
      'folders:',
      '  - host: .',
      '    guest: project', //      8: relative guest path
    ].join('\n');
    const { problems } = await check(yaml);
    expect(problems).toEqual([
      'Envfile:1:7 name: "Web_App" is not a valid host name — use 1–63 lowercase letters, digits and inner hyphens',
      'Envfile:2:1 provder: unknown key "provder" — did you mean "provider"?',
      'Envfile:3:9 memory: "lots" is not a size — write it like 2GiB, 512M or 1.5G',
      'Envfile:5:5 ports[0]: 99999 is not a port — use a number from 1 to 65535',
      'Envfile:8:12 folders[0].guest: "project" is not an absolute guest path — start it with /, e.g. /home/dev/project',
    ]);
  });

  it('refuses an alias bomb without expanding it', async () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 10; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
    const { problems } = await check(lines.join('\n'));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^Envfile:1:1 Excessive alias count .* — don't build the Envfile from nested aliases$/);
  });

  it('refuses a folder that escapes through a symlink', async () => {
    const { problems } = await check('folders:\n  - { host: link, guest: /srv }\n', { files: {} }).then(async () => {
      const { mkdtemp, symlink, writeFile, rm } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      const { checkEnvfile } = await import('../../../src/envfile/index.js');
      const dir = await mkdtemp(join(tmpdir(), 'envbox-ef-'));
      try {
        await symlink('/etc', join(dir, 'link'));
        await writeFile(join(dir, 'Envfile'), 'folders:\n  - { host: link, guest: /srv }\n');
        const r = await checkEnvfile(join(dir, 'Envfile'), { isRoot: true });
        return { problems: r.problems.map((p) => `${p.line}:${p.col} ${p.path}: ${p.message.replaceAll(dir, 'PROJECT')}`) };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
    expect(problems).toEqual(['2:13 folders[0].host: link is outside the project folder — use a path inside PROJECT']);
  });
});

describe('Envfile defaults', () => {
  it('fills in every default, distinguishing "not set" from empty', async () => {
    const { config, dir } = await check('name: web\n');
    expect(config).toMatchObject({
      name: 'web',
      provider: 'container',
      image: { from: 'debian/bookworm', packages: [] },
      user: 'dev',
      folders: [{ guest: '/home/dev/project', events: 'auto', mode: 'mount', ignore: [] }],
      ports: [],
      autoPorts: { enabled: false },
      proxy: { socks: 'auto', auth: false },
      network: { outbound: true },
      cpus: undefined,
      memoryBytes: undefined,
    });
    expect(config!.folders[0]!.host).toBe(dir);
    const empty = await check('folders: []\n');
    expect(empty.config!.folders).toEqual([]);
  });

  it.each([
    ['provider: incus\nremote: loop\n', 'sync'],
    ['provider: lxd\nremote: https://10.0.0.1:8443\n', 'sync'],
    ['provider: incus\n', 'mount'],
    ['provider: incus\nremote: /var/lib/incus/unix.socket\n', 'mount'],
    ['provider: incus\nremote: loop\nfolders: [{ host: ., guest: /srv/app, mode: mount }]\n', 'mount'],
    ['provider: vm\n', 'mount'],
  ])('folders default to mode sync only on a remote daemon: %j', async (text, mode) => {
    const { config } = await check(text);
    expect(config!.folders.map((f) => f.mode)).toEqual([mode]);
  });

  it('normalises ports, sizes and provisioning', async () => {
    const { config } = await check(
      'memory: 512M\nports: [8000, { guest: 5432, host: 5433, protocol: udp }]\nprovision:\n  - shell: echo hi\n  - file: { from: a.txt, to: /tmp/a }\n    run: always\n',
      { files: { 'a.txt': 'a' } },
    );
    expect(config!.memoryBytes).toBe(512 * 2 ** 20);
    expect(config!.ports).toEqual([
      { host: 8000, guest: 8000, hostIp: '127.0.0.1', guestIp: '127.0.0.1', protocol: 'tcp', autoCorrect: false, reverse: false },
      { host: 5433, guest: 5432, hostIp: '127.0.0.1', guestIp: '127.0.0.1', protocol: 'udp', autoCorrect: false, reverse: false },
    ]);
    expect(config!.provision.map((s) => [s.kind, s.name, s.run])).toEqual([
      ['shell', 'shell #1', 'once'],
      ['file', 'file a.txt', 'always'],
    ]);
  });

  it('names the env after its folder when no name is given', async () => {
    const { nameFromFolder } = await import('../../../src/envfile/defaults.js');
    expect(nameFromFolder('/home/me/My_Project.v2')).toBe('my-project-v2');
    expect(nameFromFolder('/___')).toBe('env');
  });
});
