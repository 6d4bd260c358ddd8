import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cachedConfig, configCacheDir, configCacheFile, imageKeyFor, PRUNE_ABOVE, readEnvfileCached } from '../../../src/envfile/cache.js';
import { resolveImage } from '../../../src/images/resolve.js';
import { readEnvfile } from '../../../src/envfile/index.js';

let root: string;
let project: string;
let envfile: string;
const saved = { cache: process.env.XDG_CACHE_HOME, mirror: process.env.ENVBOX_MIRROR };

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'envbox-cfgcache-'));
  project = join(root, 'project');
  envfile = join(project, 'Envfile');
  await mkdir(project);
  process.env.XDG_CACHE_HOME = join(root, 'cache');
  delete process.env.ENVBOX_MIRROR;
});

afterEach(async () => {
  for (const [name, value] of [['XDG_CACHE_HOME', saved.cache], ['ENVBOX_MIRROR', saved.mirror]] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await rm(root, { recursive: true, force: true });
});

/** The error (message and hint) a call throws, or 'ok'. */
async function outcome(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    const e = err as Error & { code?: string; hint?: string };
    return `${e.code}: ${e.message} | ${e.hint}`;
  }
}

/** The cached and the uncached read must end the same way, error for error. */
async function expectSameAsUncached(): Promise<string> {
  const uncached = await outcome(() => readEnvfile(envfile));
  const cached = await outcome(() => readEnvfileCached(envfile));
  expect(cached).toBe(uncached);
  return cached;
}

const FOLDERS = 'name: web\nfolders:\n  - { host: src, guest: /home/dev/src }\nprovision:\n  - script: setup.sh\n';

describe('config cache', () => {
  it('a second read of an unchanged Envfile comes from the cache, equal to a full check', async () => {
    await writeFile(envfile, 'name: web\nports: [8000]\nnetwork: { outbound: false }\n');
    expect(cachedConfig(envfile)).toBeUndefined();
    const first = await readEnvfileCached(envfile);
    expect(first).toEqual(await readEnvfile(envfile));
    const hit = cachedConfig(envfile);
    expect(hit).toEqual(first);
    expect(await readEnvfileCached(envfile)).toEqual(first);
    // The entry is private to the user.
    const { statSync } = await import('node:fs');
    expect(statSync(configCacheFile(envfile)).mode & 0o077).toBe(0);
  });

  it('any change to the bytes misses, even in a comment, and the new content is what comes back', async () => {
    await writeFile(envfile, 'name: web\n# note\n');
    await readEnvfileCached(envfile);
    expect(cachedConfig(envfile)).toBeDefined();
    await writeFile(envfile, 'name: web\n# nose\n');
    expect(cachedConfig(envfile)).toBeUndefined();
    await writeFile(envfile, 'name: api\n# note\n');
    expect(cachedConfig(envfile)).toBeUndefined();
    expect((await readEnvfileCached(envfile)).name).toBe('api');
    expect(cachedConfig(envfile)?.name).toBe('api');
  });

  it('an Envfile that went bad after being cached gives exactly the uncached errors', async () => {
    await writeFile(envfile, 'name: web\ncpus: 2\n');
    await readEnvfileCached(envfile);
    await writeFile(envfile, 'name: web\ncpus: two\nprovder: container\n');
    const message = await expectSameAsUncached();
    expect(message).toContain('Envfile:2:7 cpus: expected a whole number of CPUs');
    expect(message).toContain('Envfile:3:1 provder: unknown key "provder" — did you mean "provider"?');
    // A YAML syntax error, too.
    await writeFile(envfile, 'name: [web\n');
    expect(await expectSameAsUncached()).toContain('ENVFILE_INVALID');
  });

  it('a shared folder that disappears, or becomes a file, invalidates the entry', async () => {
    await mkdir(join(project, 'src'));
    await writeFile(join(project, 'setup.sh'), 'true\n');
    await writeFile(envfile, FOLDERS);
    await readEnvfileCached(envfile);
    expect(cachedConfig(envfile)).toBeDefined();

    await rm(join(project, 'src'), { recursive: true });
    expect(cachedConfig(envfile)).toBeUndefined();
    expect(await expectSameAsUncached()).toContain('Envfile:3:13 folders[0].host: src does not exist');

    await writeFile(join(project, 'src'), 'not a folder');
    expect(cachedConfig(envfile)).toBeUndefined();
    expect(await expectSameAsUncached()).toContain('src is a file, not a folder');
  });

  it('a folder or script swapped for a symlink out of the project invalidates the entry', async () => {
    const outside = join(root, 'outside');
    await mkdir(outside);
    await mkdir(join(project, 'src'));
    await writeFile(join(project, 'setup.sh'), 'true\n');
    await writeFile(envfile, FOLDERS);
    await readEnvfileCached(envfile);

    await rm(join(project, 'setup.sh'));
    await writeFile(join(outside, 'setup.sh'), 'true\n');
    await symlink(join(outside, 'setup.sh'), join(project, 'setup.sh'));
    expect(cachedConfig(envfile)).toBeUndefined();
    expect(await expectSameAsUncached()).toContain('provision[0].script: setup.sh is outside the project folder');

    await rm(join(project, 'setup.sh'));
    await writeFile(join(project, 'setup.sh'), 'true\n');
    await rm(join(project, 'src'), { recursive: true });
    await symlink(outside, join(project, 'src'));
    expect(cachedConfig(envfile)).toBeUndefined();
    expect(await expectSameAsUncached()).toContain('folders[0].host: src is outside the project folder');
  });

  it('an imported image that is removed invalidates the entry', async () => {
    const key = '0123456789abcdef';
    const dir = join(root, 'cache', 'envbox', 'images', key);
    await mkdir(join(dir, 'rootfs'), { recursive: true });
    const meta = { name: 'myimage', key, source: 'import', recipe: null, packages: [], size: 1, created: new Date().toISOString() };
    await writeFile(join(dir, 'image.json'), JSON.stringify(meta));
    await writeFile(envfile, 'name: web\nimage: myimage\n');
    const config = await readEnvfileCached(envfile);
    expect(config).toMatchObject({ image: { from: 'myimage' } });
    expect(imageKeyFor(config)).toBe(key);
    expect(cachedConfig(envfile)).toBeDefined();

    await rm(dir, { recursive: true });
    expect(cachedConfig(envfile)).toBeUndefined();
    expect(await expectSameAsUncached()).toContain('Envfile:2:8 image: unknown image "myimage"');
  });

  it('knows the image key of a config it read, checked or cached, as resolving the image gives it', async () => {
    await writeFile(envfile, 'name: web\nimage: { from: debian/bookworm, packages: [git] }\n');
    const want = (await resolveImage({ from: 'debian/bookworm', packages: ['git'] })).key;
    const checked = await readEnvfileCached(envfile);
    expect(imageKeyFor(checked)).toBe(want);
    const hit = await readEnvfileCached(envfile);
    expect(hit).not.toBe(checked);
    expect(imageKeyFor(hit)).toBe(want);
    expect(imageKeyFor(await readEnvfile(envfile))).toBeUndefined();
  });

  it('a recipe image misses when ENVBOX_MIRROR changes, and a bad mirror gives the uncached error', async () => {
    await writeFile(envfile, 'name: web\nimage: debian/bookworm\n');
    await readEnvfileCached(envfile);
    expect(cachedConfig(envfile)).toBeDefined();
    process.env.ENVBOX_MIRROR = 'not a url';
    expect(cachedConfig(envfile)).toBeUndefined();
    expect(await expectSameAsUncached()).toContain('ENVBOX_MIRROR="not a url" is not a mirror URL');
  });

  it('a corrupt, truncated or foreign cache entry is ignored and replaced', async () => {
    await writeFile(envfile, 'name: web\n');
    await readEnvfileCached(envfile);
    const file = configCacheFile(envfile);
    const good = await readFile(file, 'utf8');
    for (const bad of ['', '{"format":1,', 'null', '[]', good.replace(/"key":"[0-9a-f]+"/, '"key":"0"'), '\u0000\u0001garbage']) {
      await writeFile(file, bad);
      expect(cachedConfig(envfile)).toBeUndefined();
      expect((await readEnvfileCached(envfile)).name).toBe('web');
      expect(cachedConfig(envfile)?.name).toBe('web');
    }
    // A cache folder that can't be written only costs the full check.
    await rm(join(root, 'cache'), { recursive: true });
    await writeFile(join(root, 'cache'), 'a file where the folder should be');
    expect((await readEnvfileCached(envfile)).name).toBe('web');
  });

  it("drops the entries of Envfiles that are gone once there are many, and keeps the others'", async () => {
    const envfiles: string[] = [];
    for (let i = 0; i <= PRUNE_ABOVE; i++) {
      const dir = join(root, `p${i}`);
      await mkdir(dir);
      envfiles.push(join(dir, 'Envfile'));
      await writeFile(envfiles[i]!, `name: p${i}\n`);
      await readEnvfileCached(envfiles[i]!);
    }
    // The first writes stayed under the limit; the last found nothing gone.
    expect((await readdir(configCacheDir())).length).toBe(PRUNE_ABOVE + 1);
    for (const f of envfiles.slice(0, 10)) await rm(dirname(f), { recursive: true });
    await writeFile(join(configCacheDir(), 'corrupt.json'), '{');
    await writeFile(envfile, 'name: web\n');
    await readEnvfileCached(envfile);
    expect((await readdir(configCacheDir())).sort()).toEqual(
      [...envfiles.slice(10), envfile].map((f) => configCacheFile(f).split('/').pop()).sort(),
    );
    expect(cachedConfig(envfiles[10]!)?.name).toBe('p10');
  });

  it('missing Envfile and too-big Envfile errors are the uncached ones', async () => {
    expect(await expectSameAsUncached()).toContain('ENVFILE_NOT_FOUND');
    await writeFile(envfile, `name: web\n# ${'x'.repeat(300 * 1024)}\n`);
    expect(await expectSameAsUncached()).toContain('ENVFILE_TOO_LARGE');
  });
});
