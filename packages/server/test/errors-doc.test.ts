// Every server error code is documented in docs/errors.md under "@flashserve/server", and the docs
// list no server code that does not exist.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { SERVER_ERROR_CODES } from '../src/errors.js';

const docs = readFileSync(join(import.meta.dirname, '../../../docs/errors.md'), 'utf8');
const section = docs.slice(docs.indexOf('## @flashserve/server'));

test('every server error code is in docs/errors.md', () => {
  expect(section.length).toBeGreaterThan(100);
  const missing = SERVER_ERROR_CODES.filter((code) => !section.includes(`\`${code}\``));
  expect(missing).toEqual([]);
});

test('codes are unique and well-formed', () => {
  expect(new Set(SERVER_ERROR_CODES).size).toBe(SERVER_ERROR_CODES.length);
  for (const code of SERVER_ERROR_CODES) expect(code).toMatch(/^FS_ERR_[A-Z]+_[A-Z_]+$/);
});

test('the server section documents no code that does not exist', () => {
  const end = section.indexOf('\n## ', 5);
  const own = end < 0 ? section : section.slice(0, end);
  const documented = [...own.matchAll(/`(FS_ERR_[A-Z_]+)`/g)].map((m) => m[1]);
  expect(documented.filter((c) => !SERVER_ERROR_CODES.includes(c ?? ''))).toEqual([]);
});
