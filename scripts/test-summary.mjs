#!/usr/bin/env node
// Prints one closing line with the test totals of every package, read from the JSON reports that
// vitest writes (packages/*/test-results.json), so a CI log ends with what actually ran.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
let passed = 0;
let failed = 0;
let skipped = 0;
const missing = [];
for (const pkg of readdirSync(join(root, 'packages'))) {
  const report = join(root, 'packages', pkg, 'test-results.json');
  if (!existsSync(report)) {
    missing.push(pkg);
    continue;
  }
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  const skippedNames = (r.testResults ?? [])
    .flatMap((f) => f.assertionResults ?? [])
    .filter((a) => a.status === 'pending' || a.status === 'skipped')
    .map((a) => a.fullName ?? a.title);
  if (skippedNames.length > 0)
    console.log(`${pkg}: skipped ${skippedNames.length}: ${skippedNames.join('; ')}`);
}
if (missing.length > 0) console.log(`no test report from: ${missing.join(', ')}`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || missing.length > 0 || passed === 0 ? 1 : 0);
