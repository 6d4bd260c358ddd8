/** One thing wrong with an Envfile, with where it is. Rendered as `FILE:LINE:COL key.path: message`. */
export interface Problem {
  file: string;
  line: number;
  col: number;
  /** The key path, like `ports[1].host`; empty for the whole file. */
  path: string;
  message: string;
}

export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${part}` : part;
  }
  return out;
}

export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col} ${p.path ? `${p.path}: ` : ''}${p.message}`;
}
