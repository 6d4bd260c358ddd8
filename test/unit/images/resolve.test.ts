import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REQUIRED_PACKAGES, type ResolvedRecipe } from '../../../src/images/recipe.js';
import { imageKey, resolveImage } from '../../../src/images/resolve.js';
import { imagesDir } from '../../../src/util/paths.js';

const base: ResolvedRecipe = {
  suite: 'bookworm',
  components: ['main'],
  variant: 'apt',
  packages: [...REQUIRED_PACKAGES, 'git'],
  mirror: null,
};

describe('imageKey', () => {
  it('is the same for the same content, whatever the package and component order', () => {
    expect(imageKey(base)).toMatch(/^[0-9a-f]{16}$/);
    expect(imageKey({ ...base })).toBe(imageKey(base));
    expect(imageKey({ ...base, packages: [...base.packages].reverse() })).toBe(imageKey(base));
    expect(imageKey({ ...base, packages: [...base.packages, 'git'] })).toBe(imageKey(base));
    const two = { ...base, components: ['main', 'contrib'] };
    expect(imageKey({ ...two, components: ['contrib', 'main'] })).toBe(imageKey(two));
  });

  it('changes with anything that changes the image', () => {
    const keys = [
      base,
      { ...base, packages: [...base.packages, 'zsh'] },
      { ...base, packages: base.packages.filter((p) => p !== 'git') },
      { ...base, suite: 'trixie' },
      { ...base, variant: 'minbase' as const },
      { ...base, components: ['main', 'contrib'] },
      { ...base, mirror: 'http://mirror.example/debian' },
    ].map(imageKey);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('resolveImage', () => {
  let dir: string;
  let cache: string;
  const saved = { ...process.env };
  const write = async (path: string, text: string) => {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text);
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envbox-recipes-'));
    cache = await mkdtemp(join(tmpdir(), 'envbox-cache-'));
    process.env.XDG_CACHE_HOME = cache;
    delete process.env.ENVBOX_MIRROR;
    await write(join(dir, 'debian/bookworm.yaml'), 'suite: bookworm\npackages: [git]\n');
    await write(join(dir, 'python/bookworm.yaml'), 'from: debian/bookworm\npackages: [python3]\n');
  });
  afterEach(async () => {
    process.env = { ...saved };
    await rm(dir, { recursive: true, force: true });
    await rm(cache, { recursive: true, force: true });
  });

  it('keys a recipe by its resolved content', async () => {
    const image = await resolveImage('python/bookworm', dir);
    expect(image).toMatchObject({ name: 'python/bookworm', source: 'recipe', file: join(dir, 'python/bookworm.yaml') });
    expect(image.recipe!.packages).toEqual([...REQUIRED_PACKAGES, 'git', 'python3'].sort());
    expect(image.key).toBe(imageKey(image.recipe!));
  });

  it('rebuilds only when the recipe content changes', async () => {
    const before = (await resolveImage('python/bookworm', dir)).key;
    await write(join(dir, 'python/bookworm.yaml'), '# a comment changes nothing\nfrom: debian/bookworm\npackages:\n  - python3\n');
    expect((await resolveImage('python/bookworm', dir)).key).toBe(before);
    await write(join(dir, 'debian/bookworm.yaml'), 'suite: bookworm\npackages: [git, zsh]\n');
    expect((await resolveImage('python/bookworm', dir)).key).not.toBe(before);
  });

  it('bakes in extra packages under their own key and name', async () => {
    const plain = await resolveImage('debian/bookworm', dir);
    const extra = await resolveImage({ from: 'debian/bookworm', packages: ['python3', 'curl', 'git'] }, dir);
    expect(extra.name).toBe('debian/bookworm+curl+python3');
    expect(extra.key).not.toBe(plain.key);
    expect(extra.recipe!.packages).toEqual(expect.arrayContaining(['curl', 'python3', 'git']));
    // The same package set reached another way is the same image.
    expect((await resolveImage({ from: 'python/bookworm', packages: ['curl'] }, dir)).key).toBe(
      (await resolveImage({ from: 'debian/bookworm', packages: ['curl', 'python3'] }, dir)).key,
    );
    // Packages the recipe already has add nothing.
    expect(await resolveImage({ from: 'debian/bookworm', packages: ['git', 'sudo'] }, dir)).toEqual(plain);
  });

  it('applies ENVBOX_MIRROR to every recipe and rejects a bad one', async () => {
    const plain = await resolveImage('debian/bookworm', dir);
    process.env.ENVBOX_MIRROR = 'http://mirror.example/debian';
    const mirrored = await resolveImage('debian/bookworm', dir);
    expect(mirrored.recipe!.mirror).toBe('http://mirror.example/debian');
    expect(mirrored.key).not.toBe(plain.key);
    process.env.ENVBOX_MIRROR = 'mirror.example debian';
    await expect(resolveImage('debian/bookworm', dir)).rejects.toMatchObject({ code: 'MIRROR_INVALID', exit: 2 });
  });

  it('suggests the closest name for an unknown image', async () => {
    await expect(resolveImage('debian/bookwrom', dir)).rejects.toMatchObject({
      code: 'IMAGE_UNKNOWN',
      exit: 2,
      message: 'unknown image "debian/bookwrom" — did you mean debian/bookworm?',
      hint: 'use one of: debian/bookworm, python/bookworm (or add one with env image import)',
    });
    await expect(resolveImage({ from: 'debian/bookworm', packages: ['Not A Package'] }, dir)).rejects.toMatchObject({
      code: 'IMAGE_PACKAGES_INVALID',
    });
  });

  it('finds imported images by name, and refuses to add packages to them', async () => {
    const key = '0123456789abcdef';
    const meta = { name: 'myimage', key, source: 'import', recipe: null, packages: [], size: 1, created: '2024-01-01T00:00:00.000Z' };
    await write(join(imagesDir(), key, 'image.json'), JSON.stringify(meta));
    expect(await resolveImage('myimage', dir)).toEqual({ name: 'myimage', key, source: 'import', recipe: null, file: null });
    await expect(resolveImage({ from: 'myimage', packages: ['git'] }, dir)).rejects.toMatchObject({ code: 'IMAGE_IMPORT_PACKAGES' });
    await expect(resolveImage('myimag', dir)).rejects.toMatchObject({ message: 'unknown image "myimag" — did you mean myimage?' });
  });
});
