/** Sizes as people write them: `2GiB`, `512M`, `1.5G`, `1048576`. K/M/G/T are binary (like Lima and Docker). */
const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 2 ** 10, kb: 1e3, kib: 2 ** 10,
  m: 2 ** 20, mb: 1e6, mib: 2 ** 20,
  g: 2 ** 30, gb: 1e9, gib: 2 ** 30,
  t: 2 ** 40, tb: 1e12, tib: 2 ** 40,
};

export function parseSize(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${i === 0 ? value : value.toFixed(value < 10 ? 1 : 0)}${units[i]}`;
}
