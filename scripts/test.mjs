// The test command: unit, integration and e2e tiers in order (the real-guest tiers one file at a
// time), then one closing line with the totals. Extra arguments go to every vitest run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const tiers = [
  ['unit', []],
  ['integration', ['--no-file-parallelism']],
  ['e2e', ['--no-file-parallelism']],
];
const scratch = mkdtempSync(join(tmpdir(), 'envbox-test-report-'));
const totals = { passed: 0, failed: 0, skipped: 0 };
let status = 0;
for (const [tier, flags] of tiers) {
  const report = join(scratch, `${tier}.json`);
  const r = spawnSync('npx', ['vitest', 'run', '--project', tier, ...flags, '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (r.status !== 0) status = 1;
  try {
    const json = JSON.parse(readFileSync(report, 'utf8'));
    totals.passed += json.numPassedTests;
    totals.failed += json.numFailedTests;
    totals.skipped += json.numPendingTests + json.numTodoTests;
    if (json.numTotalTests === 0) status = 1;
  } catch {
    status = 1;
    console.error(`no test report from the ${tier} tier`);
  }
}
rmSync(scratch, { recursive: true, force: true });
console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(status);
