#!/usr/bin/env node
// The Node side of `env`/`envbox`; the shim (native/env-shim.c or bin/env) only starts it for
// envbox's own commands.
import { restoreCaCerts } from './util/ca-certs.js';
import { trace } from './util/trace.js';

restoreCaCerts();
trace('cli.js started');

const args = process.argv.slice(2);
// -h means --help everywhere, up to a `--` that starts a guest command line.
const end = args.includes('--') ? args.indexOf('--') : args.length;
for (let i = 0; i < end; i++) if (args[i] === '-h') args[i] = '--help';

// `env up` has a lean path that skips loading oclif (src/cli/lean.ts); it hands anything unusual back.
if (!(args[0] === 'up' && (await (await import('./cli/lean.js')).runLeanUp(args.slice(1))))) {
  const { execute } = await import('@oclif/core');
  trace('@oclif/core loaded');
  await execute({ args, dir: import.meta.url });
}
trace('command finished');
