import { createHash } from 'node:crypto';
import { UsageError } from '../util/errors.js';
import { closest } from '../util/suggest.js';
import { CUSTOMIZE_VERSION } from './customize.js';
import {
  listRecipes,
  MIRROR_URL,
  normalizePackages,
  PACKAGE_NAME,
  recipeFile,
  recipesDir,
  resolveRecipe,
  type ResolvedRecipe,
} from './recipe.js';
import { listCached, type ImageSource } from './store.js';

/** What the Envfile's `image:` says: a recipe or imported image name, or a recipe plus packages baked in. */
export type ImageRef = string | { from: string; packages?: string[] };

export interface ResolvedImage {
  /** `debian/bookworm`, `debian/bookworm+git+python3` (extra packages), or an imported image's name. */
  name: string;
  key: string;
  source: ImageSource;
  /** Set for recipe images: exactly what mmdebstrap builds. */
  recipe: ResolvedRecipe | null;
  /** The recipe file, for messages. */
  file: string | null;
}

/** Imported images have names without a slash, so they never shadow a recipe. */
export const IMPORT_NAME = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * The cache key: a hash of everything that decides the image's content and nothing else, so editing a
 * recipe (or the customization rules) rebuilds it and reordering packages does not.
 */
export function imageKey(recipe: ResolvedRecipe): string {
  const canonical = JSON.stringify({
    customize: CUSTOMIZE_VERSION,
    suite: recipe.suite,
    components: [...recipe.components].sort(),
    variant: recipe.variant,
    packages: normalizePackages(recipe.packages),
    mirror: recipe.mirror,
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** ENVBOX_MIRROR, when set, replaces every recipe's mirror (a local mirror or caching proxy). */
export function mirrorOverride(): string | undefined {
  const mirror = process.env.ENVBOX_MIRROR?.trim();
  if (!mirror) return undefined;
  if (!MIRROR_URL.test(mirror)) {
    throw new UsageError('MIRROR_INVALID', `ENVBOX_MIRROR=${JSON.stringify(mirror)} is not a mirror URL`, {
      hint: 'set it to one URL like http://HOST/debian, or unset it to use the default mirror',
    });
  }
  return mirror;
}

/** Names an image and computes its key without building anything. `dir` is the recipes folder (tests). */
export async function resolveImage(ref: ImageRef, dir = recipesDir()): Promise<ResolvedImage> {
  const from = typeof ref === 'string' ? ref : ref.from;
  const wanted = typeof ref === 'string' ? [] : (ref.packages ?? []);
  const bad = wanted.filter((p) => !PACKAGE_NAME.test(p));
  if (bad.length > 0) {
    throw new UsageError('IMAGE_PACKAGES_INVALID', `${bad.map((p) => JSON.stringify(p)).join(', ')} is not a Debian package name`, {
      hint: 'use names like git or python3-venv',
    });
  }

  const recipes = await listRecipes(dir);
  if (recipes.includes(from)) {
    const base = await resolveRecipe(from, dir);
    const mirror = mirrorOverride();
    const extras = normalizePackages(wanted).filter((p) => !base.packages.includes(p));
    const recipe: ResolvedRecipe = {
      ...base,
      packages: normalizePackages([...base.packages, ...extras]),
      mirror: mirror ?? base.mirror,
    };
    const name = [from, ...extras].join('+');
    return { name, key: imageKey(recipe), source: 'recipe', recipe, file: recipeFile(from, dir) };
  }

  const imported = (await listCached()).filter((i) => i.source === 'import');
  const image = IMPORT_NAME.test(from) ? imported.find((i) => i.name === from) : undefined;
  if (image) {
    if (wanted.length > 0) {
      throw new UsageError('IMAGE_IMPORT_PACKAGES', `${from} is an imported image: envbox cannot add packages to it`, {
        hint: 'install them in a provision step instead, or build from a recipe (image: { from: debian/bookworm, packages: [...] })',
      });
    }
    return { name: from, key: image.key, source: 'import', recipe: null, file: null };
  }

  const known = [...recipes, ...new Set(imported.map((i) => i.name))];
  const guess = closest(from, known);
  throw new UsageError('IMAGE_UNKNOWN', `unknown image ${JSON.stringify(from)}${guess ? ` — did you mean ${guess}?` : ''}`, {
    hint: `use one of: ${known.join(', ')} (or add one with env image import)`,
    details: { image: from, known },
  });
}
