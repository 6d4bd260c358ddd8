/**
 * Turns mmdebstrap's `--verbose` output (its own `I:` lines plus apt's and dpkg's) into progress: what
 * it is doing, an overall fraction, and the few lines worth keeping. The parsing is pure, so it is table-tested with
 * recorded output; mmdebstrap runs with LC_ALL=C.UTF-8 so the apt and dpkg lines are in English.
 */

import type { Progress } from '../util/progress.js';

export type BuildPhase = 'start' | 'update' | 'download' | 'extract' | 'essential' | 'remaining' | 'finish' | 'done';

export interface BuildState {
  phase: BuildPhase;
  /** Packages apt announced for the current phase ("N newly installed"). */
  packages: number;
  /** Essential packages downloaded up front, installed later by dpkg. */
  essential: number;
  /** Steps done in this phase, out of `steps`. */
  done: number;
  steps: number;
}

export interface BuildStep {
  state: BuildState;
  update?: { detail: string; fraction: number };
  log?: string;
}

/**
 * Where each phase starts in the overall bar and how much of it it takes, from timing a bookworm build
 * on 2 cores: installing dominates, and the second install also downloads its own packages.
 */
const PHASES: Record<BuildPhase, { start: number; span: number; detail: string }> = {
  start: { start: 0, span: 0, detail: 'starting mmdebstrap' },
  update: { start: 0, span: 0.06, detail: 'updating package lists' },
  download: { start: 0.06, span: 0.07, detail: 'downloading essential packages' },
  extract: { start: 0.13, span: 0.08, detail: 'extracting essential packages' },
  essential: { start: 0.21, span: 0.29, detail: 'installing essential packages' },
  remaining: { start: 0.5, span: 0.43, detail: 'installing packages' },
  finish: { start: 0.93, span: 0.03, detail: 'cleaning up' },
  // The rest of the bar belongs to the caller's own steps after mmdebstrap (customizing, syncing).
  done: { start: 0.96, span: 0, detail: 'mmdebstrap finished' },
};

/** mmdebstrap's own announcements, in the order they come. */
const MARKERS: [RegExp, BuildPhase][] = [
  [/^I: running apt-get update/, 'update'],
  [/^I: downloading packages/, 'download'],
  [/^I: extracting archives/, 'extract'],
  [/^I: installing essential packages/, 'essential'],
  [/^I: installing remaining packages/, 'remaining'],
  [/^I: (running --customize-hook|cleaning package lists)/, 'finish'],
  [/^I: success/, 'done'],
];

/** Noise: apt warns about every download as root when `_apt` can't write the target, which mmdebstrap's hooks cause. */
const IGNORED_WARNINGS = /Download is performed unsandboxed/;

export function initialBuildState(): BuildState {
  return { phase: 'start', packages: 0, essential: 0, done: 0, steps: 0 };
}

export function fractionOf(state: BuildState): number {
  const { start, span } = PHASES[state.phase];
  const within = state.steps > 0 ? Math.min(1, state.done / state.steps) : 0;
  return Math.round((start + span * within) * 1000) / 1000;
}

/**
 * The line handler for runMmdebstrap: follows the build's phases and reports them to `progress`,
 * with fractions scaled by `share` when the build is only part of the work.
 */
export function buildLineReporter(progress: Progress, share = 1): (line: string) => void {
  let state = initialBuildState();
  return (line) => {
    const step = readBuildLine(state, line);
    state = step.state;
    if (step.update) progress.update(step.update.detail, step.update.fraction * share);
    if (step.log) progress.log(step.log);
  };
}

export function readBuildLine(state: BuildState, line: string): BuildStep {
  const marker = MARKERS.find(([re]) => re.test(line));
  if (marker) {
    const phase = marker[1];
    if (phase === state.phase) return { state };
    const next: BuildState = { ...state, phase, packages: 0, done: 0, steps: 0 };
    // dpkg unpacks and then sets up each essential package apt downloaded earlier.
    if (phase === 'essential') next.steps = state.essential * 2;
    const detail = PHASES[phase].detail;
    // Success is reported by the caller, the download phase once apt says how much ("Need to get ...").
    if (phase === 'done') return { state: next };
    return { state: next, update: { detail, fraction: fractionOf(next) }, log: phase === 'download' ? undefined : detail };
  }

  const announced = /^\d+ upgraded, (\d+) newly installed/.exec(line);
  if (announced && (state.phase === 'download' || state.phase === 'remaining')) {
    const packages = Number(announced[1]);
    // In the chroot apt downloads, unpacks and sets up each package: three steps each.
    const next: BuildState =
      state.phase === 'download'
        ? { ...state, packages, essential: packages, steps: packages }
        : { ...state, packages, steps: packages * 3 };
    return { state: next };
  }

  const size = /^Need to get (\S+ \S+) of archives/.exec(line);
  if (size && state.packages > 0) {
    const what = `${state.phase === 'download' ? 'essential' : 'more'} package${state.packages === 1 ? '' : 's'}`;
    return { state, log: `downloading ${state.packages} ${what} (${size[1]})` };
  }

  const get = /^Get:\d+ \S+ \S+ \S+ (\S+) /.exec(line);
  if (get && (state.phase === 'download' || state.phase === 'remaining')) return advance(state, `downloading ${get[1]}`);

  const dpkg = /^(Unpacking|Setting up) ([^\s:]+)/.exec(line);
  if (dpkg && (state.phase === 'essential' || state.phase === 'remaining')) {
    return advance(state, `${dpkg[1] === 'Unpacking' ? 'unpacking' : 'setting up'} ${dpkg[2]}`);
  }

  if (/^E: /.test(line) || (/^W: /.test(line) && !IGNORED_WARNINGS.test(line))) return { state, log: line };
  return { state };
}

function advance(state: BuildState, detail: string): BuildStep {
  const next = { ...state, done: state.done + 1 };
  return { state: next, update: { detail, fraction: fractionOf(next) } };
}

/** The lines that explain a failed build: apt's and mmdebstrap's errors if any, else the last lines. */
export function failureLines(lines: readonly string[], max = 10): string[] {
  const errors = [...new Set(lines.filter((l) => /^E: /.test(l)))];
  // mmdebstrap quotes whole command lines (every package path) in its errors.
  const short = (l: string) => (l.length > 200 ? `${l.slice(0, 199)}…` : l);
  return (errors.length > 0 ? errors : lines.filter((l) => l.trim())).slice(-max).map(short);
}

/** What to do about a failed build, judged from its output. */
export function failureHint(lines: readonly string[], logFile: string): string {
  const text = lines.join('\n');
  const missing = /Unable to locate package (\S+)|Package '?([^\s']+)'? has no installation candidate/.exec(text);
  if (missing) {
    const pkg = missing[1] ?? missing[2];
    return `${pkg} is not a package in this suite — fix the name in the recipe or in the Envfile's image.packages (full log: ${logFile})`;
  }
  if (/Temporary failure resolving|Could not resolve|Failed to fetch|Network is unreachable|Connection (failed|timed out)/.test(text)) {
    return `the package mirror could not be reached — check the network, or set ENVBOX_MIRROR to a mirror you can reach (full log: ${logFile})`;
  }
  return `see the full log in ${logFile}`;
}
