import { expect, test } from 'vitest';
import { extendBlockHashes, hashBlock } from './prefix-hash.js';

test('a block hash depends on its parent, its tokens and the extra key', () => {
  const t = [1, 2, 3, 4];
  const h = hashBlock(null, t, 0, 4);
  expect(hashBlock(null, [1, 2, 3, 4], 0, 4)).toBe(h);
  expect(hashBlock(h, t, 0, 4)).not.toBe(h);
  expect(hashBlock(null, [1, 2, 3, 5], 0, 4)).not.toBe(h);
  expect(hashBlock(null, t, 0, 4, 'lora-a')).not.toBe(h);
  // Token ids are hashed as 32-bit values, so [256] and [1, 0] cannot collide through byte packing.
  expect(hashBlock(null, [256], 0, 1)).not.toBe(hashBlock(null, [1, 0], 0, 2));
});

test('extendBlockHashes covers full blocks only and chains them', () => {
  const tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const hashes = extendBlockHashes([], tokens, tokens.length, 4);
  expect(hashes).toHaveLength(2);
  expect(hashes[1]).toBe(hashBlock(hashes[0]!, tokens, 4, 8));
  expect(extendBlockHashes(hashes, tokens, tokens.length, 4)).toHaveLength(2);
});
