// Helpers shared by the benchmark suites: timing, statistics and the report line format.
import { spawnSync } from 'node:child_process';

export function median(xs) {
  return quantile(xs, 0.5);
}

export function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}

/** Wall time of one run of a program, in milliseconds. */
export function timeOnce(cmd, args, opts = {}) {
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: 'ignore', ...opts });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}`);
  return ms;
}

/**
 * Times two commands interleaved (a, b, a, b, …) so machine noise hits both alike.
 * Returns the samples of each.
 */
export function timePair(a, b, runs, opts = {}) {
  const sa = [];
  const sb = [];
  for (let i = 0; i < runs; i++) {
    sa.push(timeOnce(a[0], a.slice(1), opts));
    sb.push(timeOnce(b[0], b.slice(1), opts));
  }
  return [sa, sb];
}

/** One figure of the report: ours beside the baseline measured in the same run. */
export function figure(name, value, unit, baseline, target) {
  return { name, value: round(value), unit, baseline: baseline && { ...baseline, value: round(baseline.value) }, target };
}

function round(v) {
  return Math.round(v * 100) / 100;
}

export function printFigure(f) {
  const base = f.baseline ? `   baseline ${f.baseline.name}: ${f.baseline.value} ${f.unit}` : '';
  const target = f.target ? `   target: ${f.target}` : '';
  console.log(`${f.name.padEnd(52)} ${String(f.value).padStart(10)} ${f.unit}${base}${target}`);
}
