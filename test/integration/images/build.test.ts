import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureImage, resolveImage, type ImageInfo } from '../../../src/images/index.js';
import { imagesDir } from '../../../src/util/paths.js';
import type { Progress } from '../../../src/util/progress.js';

function recording(onUpdate?: (detail: string) => void): Progress & { updates: [string, number | undefined][]; logs: string[] } {
  const updates: [string, number | undefined][] = [];
  const logs: string[] = [];
  return {
    updates,
    logs,
    update: (detail, fraction) => {
      updates.push([detail, fraction]);
      onUpdate?.(detail);
    },
    log: (line) => logs.push(line),
  };
}

/** Processes whose command line mentions `dir` (a build that outlived its abort would). */
async function processesUsing(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((e) => /^\d+$/.test(e))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dir)) found.push(`${pid}: ${cmdline.replaceAll('\0', ' ')}`);
  }
  return found;
}

async function mountsUnder(dir: string): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(dir));
}

// The real cache: the first run builds debian/bookworm (about a minute), later runs and the LXC tests reuse it.
describe('building debian/bookworm with mmdebstrap', () => {
  let image: ImageInfo;
  let progress: ReturnType<typeof recording>;

  beforeAll(async () => {
    progress = recording();
    image = await ensureImage('debian/bookworm', progress);
  });

  it('has what every guest needs, prepared for per-env identity', async () => {
    const root = image.rootfs;
    expect(existsSync(join(root, 'usr/sbin/sshd'))).toBe(true);
    expect(existsSync(join(root, 'usr/bin/sudo'))).toBe(true);
    expect(existsSync(join(root, 'usr/bin/inotifywait'))).toBe(true);
    expect(existsSync(join(root, 'usr/bin/git'))).toBe(true);
    expect((await readdir(join(root, 'etc/ssh'))).filter((f) => f.startsWith('ssh_host_'))).toEqual([]);
    expect(await readlink(join(root, 'etc/systemd/system/sys-kernel-debug.mount'))).toBe('/dev/null');
    expect(await readlink(join(root, 'etc/systemd/system/apt-daily.timer'))).toBe('/dev/null');
    expect(await readFile(join(root, 'etc/machine-id'), 'utf8')).toBe('');
    expect(existsSync(join(root, 'etc/hostname'))).toBe(false);
    expect(existsSync(join(root, 'etc/dpkg/dpkg.cfg.d/99mmdebstrap'))).toBe(false);
    expect(existsSync(join(root, 'var/cache/apt/archives/libc6*.deb'))).toBe(false);
    expect(image).toMatchObject({ name: 'debian/bookworm', source: 'recipe', dir: join(imagesDir(), image.key) });
    expect(image.packages).toEqual(expect.arrayContaining(['openssh-server', 'sudo', 'systemd-sysv', 'git']));
    expect(image.sizeBytes).toBeGreaterThan(100 * 2 ** 20);
  });

  it('reported its progress while building (when this run built it)', () => {
    if (progress.updates.length === 0) return;
    const fractions = progress.updates.map(([, f]) => f).filter((f): f is number => f !== undefined);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    expect(progress.updates.some(([d]) => /^setting up openssh-server$/.test(d))).toBe(true);
    expect(progress.logs.at(-1)).toMatch(/^built image debian\/bookworm \(\d+MiB\) in \d+ s$/);
  });

  it('is reused by the next ensureImage without a rebuild, and left no work folders', async () => {
    const again = recording();
    const second = await ensureImage('debian/bookworm', again);
    expect(second).toEqual(image);
    expect(again.updates).toEqual([]);
    expect((await readdir(imagesDir())).filter((e) => e.startsWith('.tmp-') && e.includes(image.key))).toEqual([]);
  });
});

describe('builds that fail or are interrupted', () => {
  let cache: string;
  const saved = process.env.XDG_CACHE_HOME;

  beforeAll(async () => {
    cache = await mkdtemp(join(tmpdir(), 'envbox-build-'));
    process.env.XDG_CACHE_HOME = cache;
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    await rm(cache, { recursive: true, force: true });
  });

  it('quote mmdebstrap and remove the work folder when a package does not exist', async () => {
    const ref = { from: 'debian/bookworm', packages: ['envbox-no-such-package'] };
    const err = await ensureImage(ref, recording()).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'IMAGE_BUILD_FAILED' });
    const { message, hint } = err as { message: string; hint: string };
    expect(message).toMatch(/^building image debian\/bookworm\+envbox-no-such-package failed \(mmdebstrap exit \d+\):\n {2}/);
    expect(message).toContain('envbox-no-such-package');
    expect(hint).toMatch(/envbox-no-such-package is not a package in this suite/);
    const left = await readdir(imagesDir());
    expect(left.filter((e) => !e.endsWith('.failed.log'))).toEqual([]);
    expect(left.filter((e) => e.endsWith('.failed.log'))).toHaveLength(1);
  });

  it('stop mmdebstrap, unmount and remove everything when aborted mid-install', async () => {
    const abort = new AbortController();
    const progress = recording((detail) => {
      if (detail.startsWith('unpacking')) abort.abort();
    });
    const ref = { from: 'debian/bookworm', packages: ['hello'] };
    const { key } = await resolveImage(ref);
    await expect(ensureImage(ref, progress, abort.signal)).rejects.toMatchObject({ code: 'IMAGE_ABORTED' });
    expect(progress.updates.some(([d]) => d.startsWith('unpacking'))).toBe(true);
    expect(await mountsUnder(cache)).toEqual([]);
    expect(await processesUsing(cache)).toEqual([]);
    expect((await readdir(imagesDir())).filter((e) => e.includes(key))).toEqual([]);
  });
});
