// `npm run bench`: every figure beside its baseline, both measured in this run, on this machine.
// Results also go to bench/results.json. Suites can be picked: npm run bench -- cli lxc
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { printFigure } from './lib.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const all = ['cli', 'lxc', 'agent', 'vm', 'incus', 'events', 'guest'];
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : all;

const results = { date: new Date().toISOString(), host: { cpus: (await import('node:os')).cpus().length }, suites: {} };
for (const name of wanted) {
  if (!all.includes(name)) {
    console.error(`unknown suite ${name}; suites: ${all.join(', ')}`);
    process.exit(2);
  }
  const suite = await import(`./${name}.mjs`);
  console.log(`\n== ${name}`);
  try {
    const figures = await suite.run(root);
    for (const f of figures) printFigure(f);
    results.suites[name] = figures;
  } catch (err) {
    console.log(`   failed: ${err.message}`);
    results.suites[name] = { error: err.message };
    process.exitCode = 1;
  }
}
writeFileSync(join(root, 'bench/results.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\nwritten to bench/results.json');
