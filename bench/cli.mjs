// The env command itself: the coreutils passthrough must cost almost nothing, and validate is quick.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { figure, median, timePair, timeOnce } from './lib.mjs';

export const name = 'cli';

export async function run(root) {
  const shim = join(root, 'native/build/env-shim');
  const perl = join(root, 'bin/env');
  const out = [];
  const runs = 300;
  if (existsSync(shim)) {
    const [ours, base] = timePair([shim, 'FOO=bar', 'true'], ['/usr/bin/env', 'FOO=bar', 'true'], runs, { argv0: 'env' });
    out.push(figure('env FOO=bar true (compiled shim), median', median(ours), 'ms', { name: '/usr/bin/env FOO=bar true', value: median(base) }, '≤ baseline + 5 ms'));
    out.push(figure('  extra cost of the compiled shim, median', median(ours) - median(base), 'ms', undefined, '≤ 5 ms'));
  }
  const [fallback, base2] = timePair([perl, 'FOO=bar', 'true'], ['/usr/bin/env', 'FOO=bar', 'true'], 100, { argv0: 'env' });
  out.push(figure('env FOO=bar true (bin/env fallback), median', median(fallback), 'ms', { name: '/usr/bin/env FOO=bar true', value: median(base2) }));

  const validate = [];
  for (let i = 0; i < 10; i++) validate.push(timeOnce(shim, ['validate', '--envfile', join(root, 'Envfile.example')], { argv0: 'env' }));
  const node = [];
  for (let i = 0; i < 10; i++) node.push(timeOnce(process.execPath, ['-e', '0']));
  out.push(figure('env validate Envfile.example, median', median(validate), 'ms', { name: 'node -e 0 (bare Node start-up)', value: median(node) }));
  return out;
}
