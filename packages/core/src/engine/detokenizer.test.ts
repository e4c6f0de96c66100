import { describe, expect, test } from 'vitest';
import { ByteTokenizer } from '../../test/support/byte-tokenizer.js';
import { ByteStreamDetokenizer, createDetokenizer, WindowDetokenizer } from './detokenizer.js';

test('multi-byte characters come out whole, once complete', () => {
  const tok = new ByteTokenizer();
  const d = new WindowDetokenizer(tok, tok.encode('prompt'), true);
  const parts = tok.encode('a€b😀').map((id) => d.push(id));
  expect(parts).toEqual(['a', '', '', '€', 'b', '', '', '', '😀']);
});

test('special tokens are skipped or rendered as asked', () => {
  const tok = new ByteTokenizer();
  const skip = new WindowDetokenizer(tok, [], true);
  const keep = new WindowDetokenizer(tok, [], false);
  expect([104, 257, 105].map((t) => skip.push(t)).join('')).toBe('hi');
  expect([104, 257, 105].map((t) => keep.push(t)).join('')).toBe('h</s>i');
});

test('decoding stays incremental: work per token does not grow with the output', () => {
  const tok = new ByteTokenizer();
  const d = new WindowDetokenizer(tok, [], true);
  const text = 'x'.repeat(2000);
  let out = '';
  for (const id of tok.encode(text)) out += d.push(id);
  expect(out).toBe(text);
  expect(tok.decodeCalls).toBeLessThan(3 * 2000 + 10);
});

test('tokens that decode to nothing do not grow the decode window', () => {
  const tok = new ByteTokenizer();
  const d = new WindowDetokenizer(tok, [], true);
  const lengths: number[] = [];
  const decode = tok.decode.bind(tok);
  tok.decode = (ids, opts) => {
    lengths.push(ids.length);
    return decode(ids, opts);
  };
  for (let i = 0; i < 100; i++) d.push(257);
  expect(d.push(104)).toBe('h');
  expect(Math.max(...lengths)).toBeLessThanOrEqual(12);
});

test('a leading-space-stripping decoder loses no text when the window slides', () => {
  // Like SentencePiece: a word token renders as " word", but the first token of a decode loses its
  // leading space.
  const words = ['The', 'quick', 'brown', 'fox', 'jumps', 'over', 'the', 'lazy', 'dog'];
  const tok = {
    vocabSize: words.length,
    eosTokenIds: [],
    specialTokenIds: new Set<number>(),
    encode: () => [],
    decode: (ids: readonly number[]) =>
      ids
        .map((id) => ` ${words[id]}`)
        .join('')
        .slice(1),
    applyChatTemplate: () => '',
  };
  const d = new WindowDetokenizer(tok, [0], true);
  let out = '';
  for (let i = 0; i < 40; i++) out += d.push(1 + (i % 8));
  const expected = Array.from({ length: 40 }, (_, i) => ` ${words[1 + (i % 8)]}`).join('');
  expect(out).toBe(expected);
});

describe('ByteStreamDetokenizer', () => {
  test('holds an incomplete character back and calls decode only for rendered special tokens', () => {
    const tok = new ByteTokenizer({ byteStream: true });
    const d = new ByteStreamDetokenizer(tok, true);
    expect(tok.encode('a€😀').map((id) => d.push(id))).toEqual(['a', '', '', '€', '', '', '', '😀']);
    expect(d.push(257)).toBe('');
    expect(tok.decodeCalls).toBe(0);
    const keep = new ByteStreamDetokenizer(tok, false);
    expect([104, 257, 105].map((t) => keep.push(t)).join('')).toBe('h</s>i');
  });

  test('createDetokenizer picks the byte stream only when the tokenizer offers tokenBytes', () => {
    expect(createDetokenizer(new ByteTokenizer({ byteStream: true }), [], true)).toBeInstanceOf(
      ByteStreamDetokenizer,
    );
    expect(createDetokenizer(new ByteTokenizer(), [], true)).toBeInstanceOf(WindowDetokenizer);
  });
});
