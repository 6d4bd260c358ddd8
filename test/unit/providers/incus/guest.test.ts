import { afterEach, describe, expect, it } from 'vitest';
import { IncusApi } from '../../../../src/providers/incus/api.js';
import { parseRemoteSetting, defaultSocket } from '../../../../src/providers/incus/daemon.js';
import { InstanceFiles } from '../../../../src/providers/incus/files.js';
import { NETWORKD_UNIT, prepareGuest } from '../../../../src/providers/incus/guest.js';
import type { GuestSpec } from '../../../../src/providers/provider.js';
import { failure, fakeDaemon, reply, sync, type FakeDaemon, type SeenRequest } from './fake-daemon.js';

/** A guest file tree behind a fake file API: what prepareGuest leaves is read back from it. */
interface Node {
  type: 'file' | 'directory' | 'symlink';
  content: string;
  uid: number;
  gid: number;
  mode: number;
}

function imageTree(): Map<string, Node> {
  const dir = (mode = 0o755): Node => ({ type: 'directory', content: '', uid: 0, gid: 0, mode });
  const file = (content: string, mode = 0o644, gid = 0): Node => ({ type: 'file', content, uid: 0, gid, mode });
  return new Map<string, Node>([
    ['/', dir()],
    ['/bin', dir()],
    ['/bin/bash', file('', 0o755)],
    ['/etc', dir()],
    ['/etc/passwd', file('root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000::/home/debian:/bin/sh\n')],
    ['/etc/group', file('root:x:0:\nusers:x:100:\n')],
    ['/etc/shadow', file('root:*:19000:0:99999:7:::\n', 0o640, 42)],
    ['/etc/gshadow', file('root:*::\n', 0o640, 42)],
    ['/etc/resolv.conf', { type: 'symlink', content: '/run/systemd/resolve/stub-resolv.conf', uid: 0, gid: 0, mode: 0o777 }],
    ['/etc/ssh', dir()],
    ['/etc/ssh/ssh_host_rsa_key', file('OLD', 0o600)],
    ['/etc/ssh/sshd_config', file('# stock\n')],
    ['/etc/skel', dir()],
    ['/etc/skel/.bashrc', file('# bashrc\n')],
    ['/home', dir()],
  ]);
}

function fileApi(tree: Map<string, Node>) {
  return (req: SeenRequest, res: Parameters<Parameters<typeof fakeDaemon>[0]>[1]) => {
    const url = new URL(req.path, 'http://x');
    const path = url.searchParams.get('path') ?? '';
    const node = tree.get(path);
    const headers = (n: Node) => ({ 'X-Incus-Uid': String(n.uid), 'X-Incus-Gid': String(n.gid), 'X-Incus-Mode': `0${n.mode.toString(8)}`, 'X-Incus-Type': n.type });
    switch (req.method) {
      case 'HEAD':
      case 'GET': {
        if (!node) return reply(res, 404, failure(404, 'Not Found'));
        if (node.type === 'directory') {
          const names = [...tree.keys()].filter((k) => k !== path && k.startsWith(path === '/' ? '/' : `${path}/`) && !k.slice(path.length + 1).includes('/'));
          return reply(res, 200, sync(names.map((k) => k.split('/').pop())), headers(node));
        }
        return reply(res, 200, node.content, { ...headers(node), 'Content-Type': 'application/octet-stream' });
      }
      case 'POST': {
        const parent = path.slice(0, path.lastIndexOf('/')) || '/';
        if (!tree.get(parent)) return reply(res, 404, failure(404, 'Not Found'));
        const h = (n: string) => String(req.headers[`x-incus-${n}`] ?? '');
        tree.set(path, { type: h('type') as Node['type'], content: req.body.toString(), uid: Number(h('uid')), gid: Number(h('gid')), mode: parseInt(h('mode'), 8) });
        return reply(res, 200, sync({}));
      }
      case 'DELETE':
        if (!node) return reply(res, 404, failure(404, 'Not Found'));
        tree.delete(path);
        return reply(res, 200, sync({}));
    }
  };
}

const spec: GuestSpec = {
  id: 'webapp-1a2b3c4d',
  hostname: 'webapp',
  stateDir: '/state',
  rootfs: '/cache/images/k/rootfs',
  user: { name: 'dev', uid: 1000, gid: 1000, home: '/home/dev', authorizedKey: 'ssh-ed25519 AAAAUSER dev\n' },
  folders: [
    { host: '/srv/a', guest: '/home/dev/code/a' },
    { host: '/srv/b', guest: '/home/dev/code/b' },
    { host: '/srv/data', guest: '/srv/data' },
  ],
  network: { outbound: false },
};
const hostKey = { privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nX\n-----END OPENSSH PRIVATE KEY-----', publicKey: 'ssh-ed25519 AAAAHOST root@webapp' };

let daemon: FakeDaemon | undefined;
let api: IncusApi | undefined;

afterEach(async () => {
  api?.close();
  await daemon?.close();
});

async function prepared(s: GuestSpec, nameservers: string[] = []): Promise<Map<string, Node>> {
  const tree = imageTree();
  daemon = await fakeDaemon(fileApi(tree));
  api = new IncusApi({ kind: 'unix', socket: daemon.socket }, 'incus');
  await prepareGuest(new InstanceFiles(api, 'e1'), s, { outbound: s.network.outbound, nameservers }, hostKey);
  return tree;
}

const owner = (n: Node | undefined) => n && `${n.type} ${n.uid}:${n.gid} ${n.mode.toString(8)}`;

describe('prepareGuest through the file API', () => {
  it('puts the user, the pinned host key and sshd setup in place with the right owners', async () => {
    const tree = await prepared(spec);
    expect(tree.get('/etc/passwd')!.content).toBe('root:x:0:0:root:/root:/bin/bash\ndev:x:1000:1000:dev:/home/dev:/bin/bash\n');
    expect(tree.get('/etc/group')!.content).toBe('root:x:0:\nusers:x:100:\ndev:x:1000:\n');
    expect(owner(tree.get('/etc/shadow'))).toBe('file 0:42 640');
    expect(tree.get('/etc/gshadow')!.content).toBe('root:*::\ndev:!::\n');
    expect(tree.has('/etc/ssh/ssh_host_rsa_key')).toBe(false);
    expect(owner(tree.get('/etc/ssh/ssh_host_ed25519_key'))).toBe('file 0:0 600');
    expect(tree.get('/etc/ssh/ssh_host_ed25519_key')!.content.endsWith('-----\n')).toBe(true);
    expect(tree.get('/etc/ssh/sshd_config.d/00-envbox.conf')!.content).toContain('HostKey /etc/ssh/ssh_host_ed25519_key');
    expect(owner(tree.get('/etc/sudoers.d/envbox'))).toBe('file 0:0 440');
    expect(owner(tree.get('/home/dev'))).toBe('directory 1000:1000 755');
    expect(owner(tree.get('/home/dev/.ssh'))).toBe('directory 1000:1000 700');
    expect(owner(tree.get('/home/dev/.ssh/authorized_keys'))).toBe('file 1000:1000 600');
    expect(tree.get('/home/dev/.ssh/authorized_keys')!.content).toBe('ssh-ed25519 AAAAUSER dev\n');
    expect(owner(tree.get('/home/dev/.bashrc'))).toBe('file 1000:1000 644');
    expect(tree.get('/etc/hostname')!.content).toBe('webapp\n');
    expect(tree.get('/etc/hosts')!.content).toContain('127.0.1.1\twebapp');
    expect(tree.get('/etc/machine-id')!.content).toMatch(/^[0-9a-f]{32}\n$/);
  });

  it('makes mount points (the user owns those in the home) and replaces a resolv.conf link', async () => {
    const tree = await prepared(spec);
    expect(owner(tree.get('/home/dev/code'))).toBe('directory 1000:1000 755');
    expect(owner(tree.get('/home/dev/code/a'))).toBe('directory 1000:1000 755');
    expect(owner(tree.get('/home/dev/code/b'))).toBe('directory 1000:1000 755');
    expect(owner(tree.get('/srv/data'))).toBe('directory 0:0 755');
    expect(owner(tree.get('/etc/resolv.conf'))).toBe('file 0:0 644');
    expect(tree.get('/etc/resolv.conf')!.content).toContain('no outbound network');
    expect(tree.has(NETWORKD_UNIT)).toBe(false);
  });

  it('with outbound network: DHCP through networkd, enabled, and the daemon network\'s DNS', async () => {
    const tree = await prepared({ ...spec, folders: [], network: { outbound: true } }, ['10.213.47.1']);
    expect(tree.get(NETWORKD_UNIT)!.content).toContain('DHCP=ipv4');
    expect(tree.get('/etc/systemd/system/multi-user.target.wants/systemd-networkd.service')).toMatchObject({ type: 'symlink', content: '/lib/systemd/system/systemd-networkd.service' });
    expect(tree.get('/etc/systemd/system/sockets.target.wants/systemd-networkd.socket')).toMatchObject({ type: 'symlink' });
    expect(tree.get('/etc/resolv.conf')!.content).toContain('nameserver 10.213.47.1');
  });
});

describe('the Envfile\'s remote:', () => {
  it.each([
    [undefined, { kind: 'local' }],
    ['local', { kind: 'local' }],
    ['/run/incus/unix.socket', { kind: 'socket', path: '/run/incus/unix.socket' }],
    ['unix:///var/lib/incus/unix.socket', { kind: 'socket', path: '/var/lib/incus/unix.socket' }],
    ['prod', { kind: 'remote', name: 'prod' }],
    ['https://incus.example.com:8443', { kind: 'remote', name: 'https://incus.example.com:8443' }],
  ])('%s', (value, expected) => expect(parseRemoteSetting(value)).toEqual(expected));

  it('finds the local socket from the environment or the usual places', () => {
    expect(defaultSocket('incus', { INCUS_SOCKET: '/tmp/s' }, () => false)).toBe('/tmp/s');
    expect(defaultSocket('incus', { INCUS_DIR: '/srv/incus' }, () => false)).toBe('/srv/incus/unix.socket');
    expect(defaultSocket('incus', {}, () => false)).toBe('/var/lib/incus/unix.socket');
    expect(defaultSocket('lxd', {}, (p) => p === '/var/lib/lxd/unix.socket')).toBe('/var/lib/lxd/unix.socket');
    expect(defaultSocket('lxd', {}, () => false)).toBe('/var/snap/lxd/common/lxd/unix.socket');
  });
});
