import { UsageError } from '../util/errors.js';
import { applyDefaults, type EnvConfig } from './defaults.js';
import { findEnvfile, loadEnvfile, positionOf, type LoadedEnvfile } from './load.js';
import { formatProblem, type Problem } from './problem.js';
import type { EnvfileInput } from './schema.js';
import { validateEnvfile } from './validate.js';

export type { EnvConfig, Folder, PortForward, ProvisionStep } from './defaults.js';
export type { Problem } from './problem.js';
export { findEnvfile } from './load.js';

/** An Envfile that failed validation: exit status 2, every problem listed. */
export class EnvfileInvalidError extends UsageError {
  readonly problems: Problem[];
  constructor(display: string, problems: Problem[]) {
    const n = problems.length;
    super('ENVFILE_INVALID', `${display} has ${n} problem${n === 1 ? '' : 's'}:\n${problems.map(formatProblem).join('\n')}`, {
      hint: 'fix them and run env validate; nothing was changed',
      details: { problems },
    });
    this.problems = problems;
  }
}

export interface CheckedEnvfile {
  loaded: LoadedEnvfile;
  problems: Problem[];
  config: EnvConfig | undefined;
}

/** Load → validate → defaults, as three passes. Never throws for a bad Envfile: the problems come back. */
export async function checkEnvfile(path: string, opts: { isRoot?: boolean; bytes?: Buffer } = {}): Promise<CheckedEnvfile> {
  const { loaded, problems } = await loadEnvfile(path, opts.bytes);
  if (problems.length) return { loaded, problems, config: undefined };
  const found = validateEnvfile(loaded, opts);
  if (found.length) return { loaded, problems: found, config: undefined };
  const config = applyDefaults(loaded.data as EnvfileInput, loaded.path);
  const imageProblem = await checkImage(loaded, config);
  if (imageProblem) return { loaded, problems: [imageProblem], config: undefined };
  return { loaded, problems: [], config };
}

/** The image must be a recipe or an imported image (no build happens here). */
async function checkImage(loaded: LoadedEnvfile, config: EnvConfig): Promise<Problem | undefined> {
  const { resolveImage } = await import('../images/resolve.js');
  try {
    await resolveImage(config.image.packages.length ? config.image : config.image.from);
    return undefined;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const path = typeof (loaded.data as { image?: unknown }).image === 'object' ? ['image', 'from'] : ['image'];
    const pos = positionOf(loaded, (loaded.data as { image?: unknown }).image === undefined ? [] : path);
    return { file: loaded.display, ...pos, path: path.join('.'), message: `${err.message}${err.hint ? `; ${err.hint}` : ''}` };
  }
}

/** Check the Envfile at `path` (its content `bytes` when already read), and throw EnvfileInvalidError on any problem. */
export async function configOf(path: string, bytes?: Buffer): Promise<EnvConfig> {
  const checked = await checkEnvfile(path, { bytes });
  if (!checked.config) throw new EnvfileInvalidError(checked.loaded.display, checked.problems);
  return checked.config;
}

/** For every command but `validate` (the config cache, cache.ts, stands in front of it): find, then configOf. */
export async function readEnvfile(explicit: string | undefined, cwd = process.cwd()): Promise<EnvConfig> {
  return configOf(findEnvfile(explicit, cwd));
}
