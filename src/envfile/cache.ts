/**
 * The validated, defaulted config of an Envfile, kept between runs so that a repeat command (`env up` of a
 * halted env, `env ssh`, `env status`) loads neither the YAML parser nor the schema. An entry is used only
 * when all of these still hold, else the Envfile is checked in full (same errors, same positions) and the
 * entry is written again:
 *
 *   key        a hash of the Envfile's bytes, its path, the user id (host ports < 1024 need root), envbox's
 *              version and the files of the code that validates (a rebuilt envbox checks again)
 *   paths      every host path the Envfile names (folders, scripts, files to copy) resolves to the same
 *              real path as when it was checked, inside the same real project folder; folders are folders
 *   image      a recipe image: the recipe files and ENVBOX_MIRROR are as they were; an imported image: it is
 *              still in the image cache
 *
 * Entries live in the cache dir (`envfiles/<hash of path and uid>.json`), written atomically; an entry that
 * can't be read or parsed is ignored (and replaced), and one that can't be written costs nothing but time.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheHome } from '../util/paths.js';
import { packageRoot } from '../util/package.js';
import { trace } from '../util/trace.js';
import type { EnvConfig } from './defaults.js';
import { findEnvfile, MAX_ENVFILE_BYTES } from './find.js';

/** Bumped when the entry's layout changes. */
const FORMAT = 2;

interface PathStamp {
  path: string;
  real: string;
  folder: boolean;
}

/** `key`: the image's cache key, which holds as long as the stamp does (env up looks the image up by it). */
type ImageStamp = { key: string } & ({ kind: 'recipe'; recipes: string; mirror: string } | { kind: 'import'; meta: string; stamp: string });

interface Entry {
  format: number;
  key: string;
  config: EnvConfig;
  project: string;
  paths: PathStamp[];
  image: ImageStamp;
}

export const configCacheDir = () => join(cacheHome(), 'envfiles');

/** The image key of each config this process read through the cache (hit or freshly checked). */
const imageKeys = new WeakMap<EnvConfig, string>();

/** The cache key of `config`'s image, when `config` came from readEnvfileCached: no recipe parsing to find it. */
export function imageKeyFor(config: EnvConfig): string | undefined {
  return imageKeys.get(config);
}

const uid = () => process.getuid?.() ?? -1;
const sha256 = (...parts: (string | Buffer)[]) => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex');
};

/** The entry for the Envfile at `path` (one per Envfile and user). */
export function configCacheFile(path: string): string {
  return join(configCacheDir(), `${sha256(path, String(uid())).slice(0, 32)}.json`);
}

const stampOf = (st: Stats) => `${st.ino}:${st.size}:${st.mtimeMs}`;

let codeStamp: string | undefined;

/** envbox's version and the validating code's files (this folder, and what it calls in images/ and util/). */
function codeVersion(): string {
  if (codeStamp) return codeStamp;
  const here = dirname(fileURLToPath(import.meta.url));
  const ext = extname(fileURLToPath(import.meta.url));
  const files = readdirSync(here).filter((f) => f.endsWith(ext)).map((f) => join(here, f));
  for (const f of ['images/resolve', 'images/recipe', 'images/customize', 'images/store', 'util/size', 'util/suggest', 'util/errors']) {
    files.push(join(here, '..', `${f}${ext}`));
  }
  const stamps = files.sort().map((f) => {
    try {
      return `${f}:${stampOf(statSync(f))}`;
    } catch {
      return `${f}:-`;
    }
  });
  let version = '';
  try {
    version = (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? '';
  } catch {
    // no version to add: the files' stamps still change with the code
  }
  codeStamp = sha256(version, ...stamps);
  return codeStamp;
}

/** Every recipe file's stamp: editing, adding or removing a recipe can change what an image name means. */
function recipesStamp(): string {
  // recipesDir() in images/recipe.ts, which this can't import: it loads the YAML parser and the schema library.
  const dir = join(packageRoot(), 'templates', 'images');
  const out: string[] = [];
  for (const distro of readdirSync(dir, { withFileTypes: true })) {
    if (!distro.isDirectory()) continue;
    for (const file of readdirSync(join(dir, distro.name)).sort()) {
      if (file.endsWith('.yaml')) out.push(`${distro.name}/${file}:${stampOf(statSync(join(dir, distro.name, file)))}`);
    }
  }
  return out.sort().join(',');
}

/** True while everything outside the Envfile that the entry was validated against is unchanged. */
function stillHolds(entry: Entry, config: EnvConfig): boolean {
  try {
    if (realpathSync(config.projectDir) !== entry.project) return false;
    for (const p of entry.paths) {
      if (realpathSync(p.path) !== p.real) return false;
      if (p.folder && !statSync(p.path).isDirectory()) return false;
    }
    if (entry.image.kind === 'recipe') {
      return entry.image.recipes === recipesStamp() && entry.image.mirror === (process.env.ENVBOX_MIRROR ?? '');
    }
    return stampOf(statSync(entry.image.meta)) === entry.image.stamp;
  } catch {
    return false;
  }
}

function readEntry(file: string, key: string): EnvConfig | undefined {
  let entry: Entry;
  try {
    entry = JSON.parse(readFileSync(file, 'utf8')) as Entry;
  } catch {
    return undefined; // none yet, or unreadable: check in full
  }
  if (!entry || typeof entry !== 'object' || entry.format !== FORMAT || entry.key !== key) return undefined;
  const config = entry.config;
  if (!config || typeof config !== 'object' || typeof config.name !== 'string' || !Array.isArray(entry.paths) || !entry.image) return undefined;
  if (!stillHolds(entry, config)) return undefined;
  if (typeof entry.image.key === 'string') imageKeys.set(config, entry.image.key);
  return config;
}

/** What the entry for a freshly validated config depends on; undefined when it can't be pinned down. */
async function entryFor(key: string, config: EnvConfig): Promise<Entry | undefined> {
  const paths: PathStamp[] = [
    ...config.folders.map((f) => ({ path: f.host, real: realpathSync(f.host), folder: true })),
    ...config.provision.flatMap((s) =>
      s.kind === 'script' ? [{ path: s.path, real: realpathSync(s.path), folder: false }]
      : s.kind === 'file' ? [{ path: s.from, real: realpathSync(s.from), folder: false }]
      : [],
    ),
  ];
  let image: ImageStamp;
  // Only the container image matters to validation for every provider (see checkImage in index.ts).
  const { resolveImage } = await import('../images/resolve.js');
  const resolved = await resolveImage(config.image.packages.length ? config.image : config.image.from);
  if (resolved.source === 'recipe') {
    image = { key: resolved.key, kind: 'recipe', recipes: recipesStamp(), mirror: process.env.ENVBOX_MIRROR ?? '' };
  } else {
    const { imageDir } = await import('../images/store.js');
    const meta = join(imageDir(resolved.key), 'image.json');
    image = { key: resolved.key, kind: 'import', meta, stamp: stampOf(statSync(meta)) };
  }
  return { format: FORMAT, key, config, project: realpathSync(config.projectDir), paths, image };
}

async function writeEntry(file: string, entry: Entry): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(tmp, JSON.stringify(entry), { mode: 0o600, flag: 'wx' });
    await rename(tmp, file);
  } catch {
    await rm(tmp, { force: true }).catch(() => undefined);
  }
  await pruneEntries(dirname(file)).catch(() => undefined);
}

/** Past this many entries, a write also drops the entries of Envfiles that are gone (throw-away projects). */
export const PRUNE_ABOVE = 64;

async function pruneEntries(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  if (names.length <= PRUNE_ABOVE) return;
  for (const name of names) {
    const file = join(dir, name);
    let envfile: unknown;
    try {
      envfile = (JSON.parse(await readFile(file, 'utf8')) as Partial<Entry>).config?.envfile;
    } catch {
      envfile = undefined; // unreadable or corrupt: of no use to anyone
    }
    if (typeof envfile !== 'string' || !existsSync(envfile)) await rm(file, { force: true });
  }
}

/** The Envfile's bytes and its cache key; undefined when it can't be read (or is too big: the full check says so). */
function keyOf(path: string): { bytes: Buffer; key: string } | undefined {
  try {
    if (statSync(path).size > MAX_ENVFILE_BYTES) return undefined;
    const bytes = readFileSync(path);
    return { bytes, key: sha256(codeVersion(), path, String(uid()), bytes) };
  } catch {
    return undefined;
  }
}

/** The cached config of the Envfile at `path` (absolute), if there is one that still holds. */
export function cachedConfig(path: string): EnvConfig | undefined {
  const keyed = keyOf(path);
  return keyed && readEntry(configCacheFile(path), keyed.key);
}

/**
 * readEnvfile (index.ts) with the cache in front: the config of the Envfile found from `explicit`/`cwd`,
 * or EnvfileInvalidError exactly as an uncached check throws it.
 */
export async function readEnvfileCached(explicit: string | undefined, cwd = process.cwd()): Promise<EnvConfig> {
  const path = resolve(findEnvfile(explicit, cwd));
  const keyed = keyOf(path);
  const file = configCacheFile(path);
  const cached = keyed && readEntry(file, keyed.key);
  if (cached) {
    trace('envfile: cached config');
    return cached;
  }
  const { configOf } = await import('./index.js');
  const config = await configOf(path, keyed?.bytes);
  trace('envfile: validated');
  if (keyed) {
    const entry = await entryFor(keyed.key, config).catch(() => undefined);
    if (entry) {
      imageKeys.set(config, entry.image.key);
      await writeEntry(file, entry);
    }
  }
  return config;
}
