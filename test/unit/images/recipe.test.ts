import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listRecipes, parseRecipe, recipesDir, REQUIRED_PACKAGES, resolveRecipe } from '../../../src/images/recipe.js';
import { EnvboxError } from '../../../src/util/errors.js';

function parseError(text: string): EnvboxError {
  try {
    parseRecipe(text, 'x.yaml');
  } catch (err) {
    if (err instanceof EnvboxError) return err;
    throw err;
  }
  throw new Error('expected the recipe to be rejected');
}

describe('parseRecipe', () => {
  it('reads every key', () => {
    const text = 'suite: bookworm\ncomponents: [main, contrib]\nvariant: minbase\nmirror: http://mirror.example/debian\npackages: [git]\n';
    expect(parseRecipe(text, 'x.yaml')).toEqual({
      suite: 'bookworm',
      components: ['main', 'contrib'],
      variant: 'minbase',
      mirror: 'http://mirror.example/debian',
      packages: ['git'],
    });
  });

  it('names the file, position and key of each problem, all at once', () => {
    const err = parseError('suite: bookworm\npackages:\n  - git\n  - "Bad Name"\nvariant: fat\npakages: [x]\n');
    expect(err.code).toBe('RECIPE_INVALID');
    expect(err.message).toBe(
      [
        'image recipe x.yaml is invalid:',
        'x.yaml:4:5 packages[1]: "Bad Name" is not a Debian package name — use names like git or python3-venv',
        'x.yaml:5:10 variant: expected one of apt, minbase, required, important, standard, buildd — apt is the usual choice',
        'x.yaml:6:1 pakages: unknown key — use from, suite, components, variant, mirror, packages',
      ].join('\n'),
    );
  });

  it('rejects a mirror that is not one URL and an empty component list', () => {
    const err = parseError('suite: bookworm\nmirror: "http://a/debian http://b/debian"\ncomponents: []\n');
    expect(err.message).toContain('x.yaml:2:9 mirror: "http://a/debian http://b/debian" is not a mirror URL');
    expect(err.message).toContain('x.yaml:3:13 components: is empty — list at least one component, e.g. [main]');
  });

  it('reports YAML syntax errors with their position', () => {
    expect(parseError('suite: bookworm\npackages: [git\n').message).toMatch(/^image recipe x.yaml is invalid:\nx.yaml:\d+:\d+ /);
  });

  it('rejects a document that is not a mapping', () => {
    expect(parseError('- git\n').message).toContain('x.yaml:1:1 expected a mapping of recipe keys');
  });
});

describe('resolveRecipe', () => {
  let dir: string;
  const write = async (name: string, text: string) => {
    await mkdir(dirname(join(dir, `${name}.yaml`)), { recursive: true });
    await writeFile(join(dir, `${name}.yaml`), text);
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envbox-recipes-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fills defaults and always adds the packages envbox needs', async () => {
    await write('debian/bookworm', 'suite: bookworm\npackages: [zsh, git]\n');
    expect(await resolveRecipe('debian/bookworm', dir)).toEqual({
      suite: 'bookworm',
      components: ['main'],
      variant: 'apt',
      packages: [...REQUIRED_PACKAGES, 'git', 'zsh'].sort(),
      mirror: null,
    });
  });

  it('inherits from: the parent, overriding its keys and adding packages', async () => {
    await write('debian/bookworm', 'suite: bookworm\nvariant: minbase\npackages: [git]\n');
    await write('py/bookworm', 'from: debian/bookworm\nmirror: http://mirror.example/debian\npackages: [python3, git]\n');
    await write('py/web', 'from: py/bookworm\ncomponents: [main, contrib]\npackages: [nginx]\n');
    const resolved = await resolveRecipe('py/web', dir);
    expect(resolved).toEqual({
      suite: 'bookworm',
      components: ['main', 'contrib'],
      variant: 'minbase',
      packages: [...REQUIRED_PACKAGES, 'git', 'nginx', 'python3'].sort(),
      mirror: 'http://mirror.example/debian',
    });
  });

  it('refuses inheritance in a circle', async () => {
    await write('a/one', 'from: a/two\n');
    await write('a/two', 'from: a/one\n');
    await expect(resolveRecipe('a/one', dir)).rejects.toMatchObject({
      code: 'RECIPE_CYCLE',
      message: 'image recipes inherit in a circle: a/one → a/two → a/one',
    });
  });

  it('requires a suite somewhere in the chain and a parent that exists', async () => {
    await write('a/nosuite', 'packages: [git]\n');
    await expect(resolveRecipe('a/nosuite', dir)).rejects.toMatchObject({
      message: `image recipe ${join(dir, 'a/nosuite.yaml')}: suite: is required`,
    });
    await write('a/orphan', 'from: a/missing\n');
    await expect(resolveRecipe('a/orphan', dir)).rejects.toMatchObject({ code: 'RECIPE_MISSING' });
  });

  it('lists recipes as distro/suite', async () => {
    await write('debian/bookworm', 'suite: bookworm\n');
    await write('node/bookworm', 'from: debian/bookworm\n');
    await writeFile(join(dir, 'debian', 'README.md'), 'not a recipe');
    expect(await listRecipes(dir)).toEqual(['debian/bookworm', 'node/bookworm']);
  });
});

describe('the shipped recipes', () => {
  it('are the base and one per env template, and all resolve', async () => {
    const names = await listRecipes();
    expect(names).toEqual(['debian/bookworm', 'node/bookworm', 'postgres/bookworm', 'python/bookworm']);
    for (const name of names) {
      const recipe = await resolveRecipe(name, recipesDir());
      expect(recipe.suite).toBe('bookworm');
      expect(recipe.mirror).toBeNull();
      expect(recipe.packages).toEqual(expect.arrayContaining([...REQUIRED_PACKAGES]));
    }
    expect((await resolveRecipe('python/bookworm')).packages).toEqual(expect.arrayContaining(['python3-venv', 'python3-pip', 'git']));
  });
});
