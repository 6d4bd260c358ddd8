import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { UsageError } from '../util/errors.js';
import { displayName, MAX_ENVFILE_BYTES } from './find.js';
import type { Problem } from './problem.js';

export { displayName, ENVFILE_NAMES, findEnvfile, MAX_ENVFILE_BYTES } from './find.js';

/** YAML aliases may be used, but an alias bomb (billion laughs) must not expand. */
const MAX_ALIASES = 50;

/** A parsed Envfile with enough of the source kept to point at any key or value. */
export interface LoadedEnvfile {
  /** Absolute path of the Envfile. */
  path: string;
  /** The project folder: the Envfile's folder. */
  dir: string;
  /** How the file is named in messages (relative to the current folder when inside it). */
  display: string;
  data: unknown;
  doc: Document.Parsed;
  lines: LineCounter;
}

/**
 * Reads and parses an Envfile. YAML syntax problems come back as Problems, all of them. `bytes`: the file's
 * content when the caller has read it already (the config cache keys on exactly those bytes).
 */
export async function loadEnvfile(path: string, bytes?: Buffer): Promise<{ loaded: LoadedEnvfile; problems: Problem[] }> {
  const display = displayName(path);
  const size = bytes ? bytes.length : statSync(path).size;
  if (size > MAX_ENVFILE_BYTES) {
    throw new UsageError('ENVFILE_TOO_LARGE', `${display} is ${size} bytes; an Envfile may be at most ${MAX_ENVFILE_BYTES}`, {
      hint: 'keep scripts in files and point provision steps at them',
    });
  }
  const text = bytes ? bytes.toString('utf8') : await readFile(path, 'utf8');
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, strict: true });
  const problems: Problem[] = [];
  for (const err of doc.errors) {
    const pos = lines.linePos(err.pos[0]);
    const message = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    problems.push({ file: display, line: pos.line, col: pos.col, path: '', message: `${message} — fix the YAML syntax` });
  }
  let data: unknown = null;
  if (problems.length === 0) {
    try {
      data = doc.toJS({ maxAliasCount: MAX_ALIASES });
    } catch (err) {
      problems.push({
        file: display, line: 1, col: 1, path: '',
        message: `${(err as Error).message} — don't build the Envfile from nested aliases`,
      });
    }
  }
  if (problems.length === 0 && (data === null || typeof data !== 'object' || Array.isArray(data))) {
    if (data === null || data === undefined) data = {};
    else problems.push({ file: display, line: 1, col: 1, path: '', message: 'the Envfile must be a mapping of keys — see Envfile.example' });
  }
  return { loaded: { path, dir: dirname(path), display, data, doc, lines }, problems };
}

/** The source position of a key path: the value's node, or for `key: true` the key itself (for unknown keys). */
export function positionOf(loaded: LoadedEnvfile, path: readonly (string | number)[], key = false): { line: number; col: number } {
  let node: unknown = loaded.doc.contents;
  let best: unknown = node;
  for (let i = 0; i < path.length; i++) {
    const part = path[i]!;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(part));
      if (!pair) break;
      node = key && i === path.length - 1 ? pair.key : pair.value;
    } else if (isSeq(node) && typeof part === 'number') {
      node = node.items[part];
    } else break;
    if (node) best = node;
    else break;
  }
  const range = (best as Node | null)?.range;
  const offset = range ? range[0] : 0;
  return loaded.lines.linePos(offset);
}
