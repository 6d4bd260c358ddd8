import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import type * as z from 'zod';
import { closest } from '../util/suggest.js';
import { type LoadedEnvfile, positionOf } from './load.js';
import { formatPath, type Problem } from './problem.js';
import { envfileSchema } from './schema.js';

type Path = (string | number)[];
interface Finding {
  path: Path;
  message: string;
  /** Point at the key itself rather than its value (unknown keys). */
  atKey?: boolean;
}

/**
 * Validation: every problem at once, each with its position. The schema checks shapes and single
 * values; the checks below need several keys or the file system. Neither stops at the first error.
 */
export function validateEnvfile(loaded: LoadedEnvfile, opts: { isRoot?: boolean } = {}): Problem[] {
  const findings = [...schemaFindings(loaded.data), ...crossFindings(loaded, opts.isRoot ?? process.getuid?.() === 0)];
  const seen = new Set<string>();
  const problems: Problem[] = [];
  for (const f of findings) {
    const pos = positionOf(loaded, f.path, f.atKey);
    const problem = { file: loaded.display, line: pos.line, col: pos.col, path: formatPath(f.path), message: f.message };
    const id = `${problem.line}:${problem.col}:${problem.path}:${problem.message}`;
    if (!seen.has(id)) problems.push(problem);
    seen.add(id);
  }
  return problems.sort((a, b) => a.line - b.line || a.col - b.col);
}

function schemaFindings(data: unknown): Finding[] {
  const knownKeys = new Map<string, string[]>();
  const result = envfileSchema.safeParse(data, {
    error: (iss) => {
      if (iss.code === 'unrecognized_keys') {
        const shape = (iss.inst as { shape?: Record<string, unknown> } | undefined)?.shape;
        knownKeys.set(JSON.stringify(iss.path ?? []), Object.keys(shape ?? {}));
      }
      return genericMessage(iss as unknown as z.core.$ZodIssue & { input?: unknown });
    },
  });
  if (result.success) return [];
  return result.error.issues.flatMap((iss) => toFindings(iss, [], data, knownKeys));
}

function toFindings(iss: z.core.$ZodIssue, prefix: Path, data: unknown, knownKeys: Map<string, string[]>): Finding[] {
  const path = [...prefix, ...(iss.path as Path)];
  if (iss.code === 'unrecognized_keys') {
    const known = knownKeys.get(JSON.stringify(path)) ?? [];
    return iss.keys.map((key) => {
      const guess = closest(key, known);
      const hint = guess ? `did you mean "${guess}"?` : `remove it; known keys here: ${known.join(', ')}`;
      return { path: [...path, key], message: `unknown key "${key}" — ${hint}`, atKey: true };
    });
  }
  if (iss.code === 'invalid_union') {
    // Report the alternative whose type matched what was written (e.g. the mapping form of a port).
    const value = valueAt(data, path);
    // Alternatives of the wrong type fail at their root; of the rest, the one with fewest issues is what was meant.
    const branches = iss.errors
      .filter((b) => !b.some((e) => e.code === 'invalid_type' && e.path.length === 0))
      .sort((a, b) => a.length - b.length);
    const branch = branches.length === 1 || (branches.length > 1 && branches[0]!.length < branches[1]!.length) ? branches[0] : undefined;
    if (branch) return branch.flatMap((e) => toFindings(e, path, data, knownKeys));
    return [{ path, message: unionMessage(path, value) }];
  }
  if (iss.code === 'invalid_key') {
    return [{ path, message: iss.issues[0]?.message ?? iss.message, atKey: true }];
  }
  return [{ path, message: iss.message }];
}

function unionMessage(path: Path, value: unknown): string {
  const last = [...path].reverse().find((p) => typeof p === 'string');
  const got = describe(value);
  switch (last) {
    case 'ports':
      return `expected a port number or a mapping like { guest: 3000, host: 3001 }, got ${got} — see Envfile.example`;
    case 'image':
      return `expected an image name or { from: NAME, packages: [...] }, got ${got}`;
    case 'provision':
      return `expected exactly one of shell:, script: or file: in this step — e.g. - shell: apt-get install -y git`;
    case 'socks':
      return `expected a port number, auto or false, got ${got}`;
    case 'auto_ports':
      return `expected true, false or { ignore: [...], only: [...] }, got ${got}`;
    default:
      return `${got} is not a valid value here — see Envfile.example`;
  }
}

function genericMessage(iss: z.core.$ZodIssue & { input?: unknown }): string | undefined {
  switch (iss.code) {
    case 'invalid_type': {
      const expected = iss.expected === 'int' ? 'a whole number' : `${article(iss.expected)}`;
      if (iss.input === undefined) return `is required — add it (${expected})`;
      return `expected ${expected}, got ${describe(iss.input)} — write ${expected} here`;
    }
    case 'invalid_value': {
      const options = iss.values.map(String);
      const guess = typeof iss.input === 'string' ? closest(iss.input, options) : undefined;
      return `${JSON.stringify(iss.input)} is not one of ${options.join(', ')}${guess ? ` — did you mean "${guess}"?` : ` — use one of those`}`;
    }
    case 'too_big':
      return `${JSON.stringify(iss.input)} is more than ${iss.maximum} — use a smaller value`;
    case 'too_small':
      return `${JSON.stringify(iss.input)} is less than ${iss.minimum} — use a larger value`;
    default:
      return undefined;
  }
}

function article(type: string): string {
  if (type === 'array') return 'a list';
  if (type === 'object' || type === 'record') return 'a mapping';
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function describe(value: unknown): string {
  if (value === null) return 'nothing (null)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the text ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

function valueAt(data: unknown, path: Path): unknown {
  let v: unknown = data;
  for (const p of path) v = v && typeof v === 'object' ? (v as Record<string | number, unknown>)[p] : undefined;
  return v;
}

const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asObject = (v: unknown): Record<string, unknown> | undefined =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/** Checks across keys and against the file system, tolerant of values the schema already rejected. */
function crossFindings(loaded: LoadedEnvfile, isRoot: boolean): Finding[] {
  const data = asObject(loaded.data) ?? {};
  const out: Finding[] = [];

  const listening = new Map<string, number>();
  asArray(data.ports).forEach((entry, i) => {
    const p = typeof entry === 'number' ? { guest: entry } : asObject(entry);
    if (!p) return;
    const reverse = p.reverse === true;
    const hostPort = typeof p.host === 'number' ? p.host : p.guest;
    if (typeof hostPort !== 'number' || !Number.isInteger(hostPort)) return;
    const path: Path = typeof entry === 'number' ? ['ports', i] : ['ports', i, p.host === undefined ? 'guest' : 'host'];
    // A reverse forward listens on the guest's port; a normal one on the host's.
    const side = reverse ? 'guest' : 'host';
    const listenPort = reverse ? p.guest : hostPort;
    const key = `${side}/${p.protocol ?? 'tcp'}/${reverse ? '' : (p.host_ip ?? '127.0.0.1')}/${listenPort}`;
    const first = listening.get(key);
    if (first !== undefined) {
      out.push({ path, message: `${side} port ${listenPort} is already used by ports[${first}] — give each forward its own ${side} port` });
    } else listening.set(key, i);
    if (!reverse && hostPort < 1024 && hostPort >= 1 && !isRoot) {
      out.push({
        path,
        message: `host port ${hostPort} is below 1024 and needs root — pick a host port ≥ 1024, e.g. { guest: ${p.guest}, host: ${8000 + hostPort} }`,
      });
    }
  });

  const guests = new Map<string, number>();
  asArray(data.folders).forEach((entry, i) => {
    const f = asObject(entry);
    if (!f) return;
    if (typeof f.host === 'string' && f.host) {
      const problem = projectPathProblem(loaded.dir, f.host, 'folder');
      if (problem) out.push({ path: ['folders', i, 'host'], message: problem });
      else if (!statSync(resolve(loaded.dir, f.host)).isDirectory()) {
        out.push({ path: ['folders', i, 'host'], message: `${f.host} is a file, not a folder — share the folder that holds it` });
      }
    }
    if (typeof f.guest === 'string') {
      const guest = f.guest.replace(/\/+$/, '') || '/';
      const first = guests.get(guest);
      if (first !== undefined) out.push({ path: ['folders', i, 'guest'], message: `${guest} is already used by folders[${first}] — mount each folder at its own guest path` });
      else guests.set(guest, i);
      if (['/', '/etc', '/usr', '/bin', '/sbin', '/lib', '/proc', '/sys', '/dev', '/boot', '/var', '/run'].includes(guest)) {
        out.push({ path: ['folders', i, 'guest'], message: `${guest} is a system folder of the guest — mount the folder somewhere like /home/dev/project` });
      }
    }
  });

  asArray(data.provision).forEach((entry, i) => {
    const step = asObject(entry);
    if (!step) return;
    if (typeof step.script === 'string' && step.script) {
      const problem = projectPathProblem(loaded.dir, step.script, 'script');
      if (problem) out.push({ path: ['provision', i, 'script'], message: problem });
    }
    const file = asObject(step.file);
    if (file && typeof file.from === 'string' && file.from) {
      const problem = projectPathProblem(loaded.dir, file.from, 'file');
      if (problem) out.push({ path: ['provision', i, 'file', 'from'], message: problem });
    }
  });
  return out;
}

/** A host path given in the Envfile must exist and stay inside the project (symlinks resolved). */
function projectPathProblem(projectDir: string, path: string, what: string): string | undefined {
  if (/[\n\r\0]/.test(path)) return undefined; // the schema reports it
  const full = resolve(projectDir, path);
  const inside = (p: string) => {
    const rel = relative(realpathSync(projectDir), p);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  };
  if (!existsSync(full)) {
    if (!inside(resolve(realpathSync(projectDir), path))) return `${path} is outside the project folder — use a path inside ${projectDir}`;
    return `${path} does not exist — create the ${what} or fix the path (relative to the Envfile)`;
  }
  if (!inside(realpathSync(full))) return `${path} is outside the project folder — use a path inside ${projectDir}`;
  return undefined;
}
