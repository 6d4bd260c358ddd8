import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { IncusApi } from '../../../../src/providers/incus/api.js';
import { ensureDaemonImage, imageAlias, imageMetadata, incusArchitecture, releaseDaemonImage } from '../../../../src/providers/incus/image.js';
import { silentProgress } from '../../../../src/util/progress.js';
import { asyncOp, failure, fakeDaemon, reply, sync, type FakeDaemon } from './fake-daemon.js';

let daemon: FakeDaemon | undefined;
let api: IncusApi | undefined;
let work = '';

afterEach(async () => {
  api?.close();
  await daemon?.close();
  if (work) await rm(work, { recursive: true, force: true });
  api = undefined;
  daemon = undefined;
  work = '';
});

describe('image metadata', () => {
  it('has what Incus needs and marks the image as envbox\'s', () => {
    const text = imageMetadata({ key: 'a8ce4fb534765e08', name: 'debian/bookworm' }, 'x86_64', new Date('2026-01-02T03:04:05Z'));
    expect(parse(text)).toEqual({
      architecture: 'x86_64',
      creation_date: 1767323045,
      properties: {
        description: 'envbox debian/bookworm (a8ce4fb534765e08)',
        os: 'debian',
        release: 'bookworm',
        'envbox.image': 'debian/bookworm',
        'envbox.key': 'a8ce4fb534765e08',
      },
    });
  });

  it('names an imported image without a slash as its own os', () => {
    expect(parse(imageMetadata({ key: '0123456789abcdef', name: 'myimage' }, 'aarch64', new Date(0))).properties).toMatchObject({ os: 'myimage', release: '' });
  });

  it.each([
    ['x64', 'x86_64'],
    ['arm64', 'aarch64'],
    ['riscv64', 'riscv64'],
  ])('architecture %s is %s', (node, incus) => expect(incusArchitecture(node)).toBe(incus));

  it('refuses an architecture it has no name for', () => {
    expect(() => incusArchitecture('mips')).toThrow(/mips/);
  });
});

describe('images in the daemon', () => {
  const image = async () => {
    work = await mkdtemp(join(tmpdir(), 'envbox-incus-img-'));
    await mkdir(join(work, 'rootfs', 'etc'), { recursive: true });
    await writeFile(join(work, 'rootfs', 'etc', 'os-release'), 'ID=debian\n');
    return { key: '0123456789abcdef', name: 'debian/bookworm', dir: work, sizeBytes: 4096 };
  };

  it('uses the copy the daemon already has under envbox\'s alias', async () => {
    daemon = await fakeDaemon((_req, res) => reply(res, 200, sync({ name: imageAlias('0123456789abcdef'), target: 'abc123' })));
    api = new IncusApi({ kind: 'unix', socket: daemon.socket }, 'incus');
    expect(await ensureDaemonImage(api, await image(), silentProgress)).toEqual({ fingerprint: 'abc123', alias: 'envbox-0123456789abcdef', imported: false });
    expect(daemon.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /1.0/images/aliases/envbox-0123456789abcdef']);
  });

  it('streams a unified tarball (metadata.yaml, rootfs/) once and aliases it', async () => {
    let tarball: Buffer = Buffer.alloc(0);
    daemon = await fakeDaemon((req, res) => {
      if (req.method === 'GET' && req.path.startsWith('/1.0/images/aliases/')) return reply(res, 404, failure(404, 'not found'));
      if (req.method === 'POST' && req.path === '/1.0/images') {
        tarball = req.body;
        return reply(res, 202, asyncOp('imp'));
      }
      if (req.path.startsWith('/1.0/operations/imp')) return reply(res, 200, sync({ id: 'imp', status: 'Success', status_code: 200, err: '', metadata: { fingerprint: 'fp1' } }));
      if (req.method === 'POST' && req.path === '/1.0/images/aliases') return reply(res, 200, sync({}));
      reply(res, 404, failure(404, 'not found'));
    });
    api = new IncusApi({ kind: 'unix', socket: daemon.socket }, 'incus');
    expect(await ensureDaemonImage(api, await image(), silentProgress)).toEqual({ fingerprint: 'fp1', alias: 'envbox-0123456789abcdef', imported: true });
    const upload = daemon.requests.find((r) => r.path === '/1.0/images')!;
    expect(upload.headers['x-incus-public']).toBe('0');
    expect(upload.headers['content-type']).toBe('application/octet-stream');
    const names = execFileSync('tar', ['--list', '--file', '-'], { input: tarball }).toString().trim().split('\n');
    expect(names).toEqual(['metadata.yaml', 'rootfs/', 'rootfs/etc/', 'rootfs/etc/os-release']);
    const metadata = parse(execFileSync('tar', ['--extract', '--to-stdout', '--file', '-', 'metadata.yaml'], { input: tarball }).toString());
    expect(metadata.properties['envbox.key']).toBe('0123456789abcdef');
    const alias = daemon.requests.find((r) => r.path === '/1.0/images/aliases')!;
    expect(JSON.parse(alias.body.toString())).toEqual({ name: 'envbox-0123456789abcdef', target: 'fp1', description: 'envbox debian/bookworm' });
  });

  it('removes an envbox image only when no instance is made from it', async () => {
    const instances: { config: Record<string, string> }[] = [{ config: { 'volatile.base_image': 'fp1' } }];
    daemon = await fakeDaemon((req, res) => {
      if (req.path === '/1.0/images/fp1' && req.method === 'GET') return reply(res, 200, sync({ properties: { 'envbox.key': 'k' } }));
      if (req.path === '/1.0/images/other') return reply(res, 200, sync({ properties: { os: 'ubuntu' } }));
      if (req.path === '/1.0/instances?recursion=1') return reply(res, 200, sync(instances));
      if (req.method === 'DELETE') return reply(res, 200, sync({}));
      reply(res, 404, failure(404, 'not found'));
    });
    api = new IncusApi({ kind: 'unix', socket: daemon.socket }, 'incus');
    expect(await releaseDaemonImage(api, 'fp1')).toBe(false);
    instances.length = 0;
    expect(await releaseDaemonImage(api, 'other')).toBe(false);
    expect(await releaseDaemonImage(api, 'gone')).toBe(false);
    expect(await releaseDaemonImage(api, 'fp1')).toBe(true);
    expect(daemon.requests.filter((r) => r.method === 'DELETE').map((r) => r.path)).toEqual(['/1.0/images/fp1']);
  });
});
