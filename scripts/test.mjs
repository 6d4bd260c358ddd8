// The test command: unit, integration and e2e tiers in order (the real-guest tiers one file at a
// time). Then, so that the tail of a long log says what went wrong: every test that passed only on a
// retry and every failure (file, test, first lines of its message), and one closing line with the
// totals. Extra arguments go to every vitest run.
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
const failures = [];
const flaky = [];
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
    for (const file of json.testResults ?? []) {
      const where = file.name.startsWith(process.cwd()) ? file.name.slice(process.cwd().length + 1) : file.name;
      const failed = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
      for (const t of failed) failures.push({ tier, where, title: t.fullName, message: (t.failureMessages ?? []).join('\n') });
      for (const t of file.assertionResults ?? []) {
        if (t.status === 'passed' && t.failureMessages?.length) flaky.push({ tier, where, title: t.fullName, message: t.failureMessages[0] });
      }
      // A file that failed outside its tests (a beforeAll, an import) has no failed test: it counts as one.
      if (failed.length === 0 && file.status === 'failed') {
        totals.failed++;
        failures.push({ tier, where, title: '(the file itself: a hook or its loading)', message: file.message || 'no message in the report; the tier log above has it' });
      }
    }
  } catch {
    status = 1;
    console.error(`no test report from the ${tier} tier`);
  }
}
rmSync(scratch, { recursive: true, force: true });
for (const f of [...flaky.map((f) => ({ ...f, label: 'PASSED ON RETRY' })), ...failures.map((f) => ({ ...f, label: 'FAILED' }))]) {
  console.log(`${f.label} [${f.tier}] ${f.where} > ${f.title}`);
  const lines = f.message.split('\n').filter((line) => !/^\s+at .*(node_modules|node:internal|<anonymous>)/.test(line));
  for (const line of lines.slice(0, 16)) console.log(`    ${line}`);
}
console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(status);
