/**
 * Host → guest path rules, pure: which host paths belong to a folder, which the folder ignores, and
 * how a relative path is checked before it is ever sent or trusted. The watcher and the sync only
 * move bytes; every decision about a path is made here and table-tested.
 *
 * Relative paths are `/`-separated, never absolute, never empty, with no `.`/`..`/empty components
 * and no NUL: the same rule the guest helper enforces, checked on the host as well so a bad path is
 * never sent, and applied to everything that comes back from the guest (LIST answers).
 */
import { posix, relative, sep } from 'node:path';

/**
 * `.git` internals change on every git command and interest no guest watcher; `.envbox-tmp-*` are
 * the guest helper's own temporary names (seen on the host through a mount while it replays).
 */
export const DEFAULT_IGNORE = ['.git/**', '.envbox-tmp-*'];

/** Why `rel` is not a safe relative path, or undefined when it is. */
export function badRelPath(rel: string): string | undefined {
  if (rel === '') return 'is empty';
  if (rel.includes('\0')) return 'contains a NUL byte';
  if (rel.startsWith('/')) return 'is absolute';
  for (const part of rel.split('/')) {
    if (part === '') return 'has an empty component';
    if (part === '.' || part === '..') return `has a "${part}" component`;
  }
  if (Buffer.byteLength(rel) > 4095) return 'is longer than 4095 bytes';
  return undefined;
}

/** Throws when `rel` could name something outside its root. */
export function checkRelPath(rel: string, what = 'path'): string {
  const why = badRelPath(rel);
  if (why) throw new Error(`the ${what} ${JSON.stringify(rel)} ${why}; envbox only moves paths inside the folder`);
  return rel;
}

/**
 * The folder-relative path of a host path, or undefined when it is the folder itself or lies outside
 * it (a symlinked parent, a path chokidar reports through `..`).
 */
export function hostRelative(hostRoot: string, hostPath: string): string | undefined {
  const rel = relative(hostRoot, hostPath);
  if (rel === '' || rel.startsWith('..') || rel.startsWith(sep) || /^[A-Za-z]:/.test(rel)) return undefined;
  const slashed = sep === '/' ? rel : rel.split(sep).join('/');
  return badRelPath(slashed) ? undefined : slashed;
}

/** The guest path for a folder-relative path. */
export function guestPathOf(guestRoot: string, rel: string): string {
  checkRelPath(rel);
  return posix.join(guestRoot, rel);
}

/**
 * A matcher for a folder's `ignore:` globs, gitignore-like:
 *   `name` (no `/`)      any path component named so, at any depth (and everything under it)
 *   `dir/name`, `/name`  anchored at the folder's root
 *   `*` `?`              within one component;  `**` any number of components
 *   trailing `/`         only directories (and everything under them)
 *   leading `!`          re-includes what an earlier pattern ignored
 * A path is ignored when it or any of its parents matches.
 */
export function ignoreMatcher(patterns: readonly string[]): (rel: string, isDir?: boolean) => boolean {
  const rules = patterns
    .map((p) => p.trim())
    .filter((p) => p && !p.startsWith('#'))
    .map((p) => {
      const negate = p.startsWith('!');
      let body = negate ? p.slice(1) : p;
      const dirOnly = body.endsWith('/');
      body = body.replace(/\/+$/, '');
      const anchored = body.includes('/');
      body = body.replace(/^\/+/, '');
      return { negate, dirOnly, re: globRegExp(anchored ? body : `**/${body}`) };
    });
  return (rel, isDir = false) => {
    const parts = rel.split('/');
    let ignored = false;
    for (const rule of rules) {
      // The path itself, then each parent (a parent is a directory).
      for (let n = parts.length; n >= 1; n--) {
        const dir = n < parts.length || isDir;
        if (rule.dirOnly && !dir) continue;
        if (rule.re.test(parts.slice(0, n).join('/'))) {
          ignored = !rule.negate;
          break;
        }
      }
    }
    return ignored;
  };
}

function globRegExp(glob: string): RegExp {
  let re = '';
  const parts = glob.split('/');
  parts.forEach((part, i) => {
    const last = i === parts.length - 1;
    if (part === '**') {
      re += last ? '.*' : '(?:[^/]+/)*';
      return;
    }
    for (const ch of part) {
      if (ch === '*') re += '[^/]*';
      else if (ch === '?') re += '[^/]';
      else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    if (!last) re += '/';
  });
  return new RegExp(`^${re}$`);
}
