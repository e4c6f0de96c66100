import { expect, test } from 'vitest';
import { ByteTokenizer } from '../../test/support/byte-tokenizer.js';
import { IncrementalDetokenizer } from './detokenizer.js';

test('multi-byte characters come out whole, once complete', () => {
  const tok = new ByteTokenizer();
  const d = new IncrementalDetokenizer(tok, tok.encode('prompt'), true);
  const parts = tok.encode('a€b😀').map((id) => d.push(id));
  expect(parts).toEqual(['a', '', '', '€', 'b', '', '', '', '😀']);
});

test('special tokens are skipped or rendered as asked', () => {
  const tok = new ByteTokenizer();
  const skip = new IncrementalDetokenizer(tok, [], true);
  const keep = new IncrementalDetokenizer(tok, [], false);
  expect([104, 257, 105].map((t) => skip.push(t)).join('')).toBe('hi');
  expect([104, 257, 105].map((t) => keep.push(t)).join('')).toBe('h</s>i');
});

test('decoding stays incremental: work per token does not grow with the output', () => {
  const tok = new ByteTokenizer();
  const d = new IncrementalDetokenizer(tok, [], true);
  const text = 'x'.repeat(2000);
  let out = '';
  for (const id of tok.encode(text)) out += d.push(id);
  expect(out).toBe(text);
  expect(tok.decodeCalls).toBeLessThan(3 * 2000 + 10);
});
