// Every error code core defines is documented in docs/errors.md, under the @flashserve/core section.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { ERROR_CODES } from '../src/errors.js';

test('every error code is in docs/errors.md', () => {
  const docs = readFileSync(fileURLToPath(new URL('../../../docs/errors.md', import.meta.url)), 'utf8');
  const core = docs.slice(docs.indexOf('## @flashserve/core'));
  const section = core.slice(0, core.indexOf('\n## ', 3) === -1 ? undefined : core.indexOf('\n## ', 3));
  const missing = ERROR_CODES.filter((code) => !section.includes(`\`${code}\``));
  expect(missing).toEqual([]);
});
