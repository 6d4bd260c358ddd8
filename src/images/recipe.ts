import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import * as z from 'zod';
import { EnvboxError } from '../util/errors.js';
import { packageRoot } from '../util/package.js';

/**
 * Image recipes: `templates/images/<distro>/<suite>.yaml`, named `<distro>/<suite>`. A recipe may start
 * `from:` another and add packages; `resolveRecipe` flattens the chain into what mmdebstrap is given.
 */

/** What envbox itself relies on in every guest: sshd to get in, sudo for the guest user, systemd as init,
 * `ip`/`ss` for address and listening-port discovery, inotifywait for folder events, CA roots for TLS. */
export const REQUIRED_PACKAGES: readonly string[] = [
  'ca-certificates',
  'inotify-tools',
  'iproute2',
  'openssh-server',
  'sudo',
  'systemd-sysv',
];

/** Variants without apt are left out: provisioning installs packages in the guest. */
export const VARIANTS = ['apt', 'minbase', 'required', 'important', 'standard', 'buildd'] as const;
export type Variant = (typeof VARIANTS)[number];

export const RECIPE_NAME = /^[a-z0-9][a-z0-9._-]*\/[a-z0-9][a-z0-9._-]*$/;
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
/** One URL, no spaces: it becomes a single mmdebstrap argument and a sources.list line. */
export const MIRROR_URL = /^(https?|file):\/\/[^\s,]+$/;

/** A string matching `re`; the message names the bad value and shows a good one. */
function matching(re: RegExp, what: string, example: string) {
  return z.string().regex(re, { error: (i) => `${JSON.stringify(i.input)} is not ${what} — ${example}` });
}

const recipeSchema = z.strictObject({
  from: matching(RECIPE_NAME, 'a recipe name', 'write it like debian/bookworm').optional(),
  suite: matching(/^[a-z0-9][a-z0-9.-]*$/, 'a suite', 'write a Debian or Ubuntu suite like bookworm').optional(),
  components: z
    .array(matching(/^[a-z0-9][a-z0-9-]*$/, 'an archive component', 'use names like main or contrib'))
    .min(1, { error: 'is empty — list at least one component, e.g. [main]' })
    .optional(),
  variant: z.enum(VARIANTS, { error: () => `expected one of ${VARIANTS.join(', ')} — apt is the usual choice` }).optional(),
  mirror: matching(MIRROR_URL, 'a mirror URL', 'write http://HOST/debian or leave it out').optional(),
  packages: z.array(matching(PACKAGE_NAME, 'a Debian package name', 'use names like git or python3-venv')).optional(),
});

export type Recipe = z.infer<typeof recipeSchema>;

/** Everything that decides an image's content, flattened: the input to the cache key and to mmdebstrap. */
export interface ResolvedRecipe {
  suite: string;
  components: string[];
  variant: Variant;
  /** Sorted, unique, REQUIRED_PACKAGES included. */
  packages: string[];
  /** Unset: mmdebstrap's own default mirror. */
  mirror: string | null;
}

/** The package's templates/ folder, found from this module whether it runs from src/ (vitest) or dist/. */
export function templatesDir(): string {
  return join(packageRoot(), 'templates');
}

export function recipesDir(): string {
  return join(templatesDir(), 'images');
}

export async function listRecipes(dir = recipesDir()): Promise<string[]> {
  const names: string[] = [];
  for (const distro of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!distro.isDirectory()) continue;
    for (const file of await readdir(join(dir, distro.name))) {
      const name = `${distro.name}/${file.replace(/\.yaml$/, '')}`;
      if (file.endsWith('.yaml') && RECIPE_NAME.test(name)) names.push(name);
    }
  }
  return names.sort();
}

export function recipeFile(name: string, dir = recipesDir()): string {
  return join(dir, `${name}.yaml`);
}

/** Parses one recipe file's text; every problem at once, each as `FILE:LINE:COL key: what — what to do`. */
export function parseRecipe(text: string, file: string): Recipe {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const at = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => `${at(e.pos[0])} ${e.message.split('\n')[0]}`);
    throw invalid(file, problems);
  }
  const result = recipeSchema.safeParse(doc.toJS() ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue): [number, string][] => {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      const known = Object.keys(recipeSchema.shape).join(', ');
      return issue.keys.map((key) => [offsetOf(doc, [...path, key], true), `${key}: unknown key — use ${known}`]);
    }
    if (path.length === 0) return [[0, 'expected a mapping of recipe keys — see templates/images/debian/bookworm.yaml']];
    return [[offsetOf(doc, path, false), `${keyPath(path)}: ${issue.message}`]];
  });
  // In file order, as an editor shows them.
  problems.sort((a, b) => a[0] - b[0]);
  throw invalid(file, problems.map(([offset, text]) => `${at(offset)} ${text}`));
}

function invalid(file: string, problems: string[]): EnvboxError {
  return new EnvboxError('RECIPE_INVALID', `image recipe ${file} is invalid:\n${problems.join('\n')}`, {
    hint: 'fix the recipe (templates/images/debian/bookworm.yaml is a commented example)',
    details: { file, problems },
  });
}

function keyPath(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** Where a key path sits in the file: the key itself when `atKey`, else its value; the nearest known parent otherwise. */
function offsetOf(doc: Document, path: (string | number)[], atKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = 0;
  for (const [i, seg] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === seg);
      if (!pair) break;
      const last = i === path.length - 1;
      const target = atKey && last ? pair.key : (pair.value ?? pair.key);
      offset = (target as { range?: [number] }).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
      node = node.items[seg];
      offset = (node as { range?: [number] }).range?.[0] ?? offset;
    } else break;
  }
  return offset;
}

export async function loadRecipe(name: string, dir = recipesDir()): Promise<Recipe> {
  const file = recipeFile(name, dir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new EnvboxError('RECIPE_MISSING', `image recipe ${name} not found (no ${file})`, {
      hint: `use one of: ${(await listRecipes(dir)).join(', ')}`,
    });
  }
  return parseRecipe(text, file);
}

/** Follows `from:` to the root recipe: a child's keys replace its parent's, packages add up. */
export async function resolveRecipe(name: string, dir = recipesDir()): Promise<ResolvedRecipe> {
  const chain: Recipe[] = [];
  const seen: string[] = [];
  for (let current: string | undefined = name; current; current = chain[0]!.from) {
    if (seen.includes(current)) {
      throw new EnvboxError('RECIPE_CYCLE', `image recipes inherit in a circle: ${[...seen, current].join(' → ')}`, {
        hint: `remove the from: key from ${recipeFile(seen.at(-1)!, dir)}`,
      });
    }
    seen.push(current);
    chain.unshift(await loadRecipe(current, dir));
  }
  const merged = Object.assign({}, ...chain) as Recipe;
  if (!merged.suite) {
    throw new EnvboxError('RECIPE_INVALID', `image recipe ${recipeFile(seen.at(-1)!, dir)}: suite: is required`, {
      hint: 'add suite: bookworm (or start the recipe from: another recipe)',
    });
  }
  return {
    suite: merged.suite,
    components: merged.components ?? ['main'],
    variant: merged.variant ?? 'apt',
    packages: normalizePackages([...REQUIRED_PACKAGES, ...chain.flatMap((r) => r.packages ?? [])]),
    mirror: merged.mirror ?? null,
  };
}

export function normalizePackages(packages: Iterable<string>): string[] {
  return [...new Set(packages)].sort();
}
