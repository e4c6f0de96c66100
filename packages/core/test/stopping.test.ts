// Stop strings, stop token ids, EOS, max_tokens and streaming text that never breaks a character.

import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ByteTokenizer, EOS } from './support/byte-tokenizer.js';
import { collect } from './support/collect.js';
import { makeEngine, params } from './support/run-engine.js';
import { scriptedLogits } from './support/tiny-model.js';

const tok = new ByteTokenizer();
const PROMPT = tok.encode('Q: ');

let byteStream = false;
function scripted(text: string | number[], after = EOS) {
  const script = typeof text === 'string' ? tok.encode(text) : text;
  return makeEngine({ model: { logits: scriptedLogits(PROMPT.length, script, after) }, byteStream }).engine;
}

function streamed(chunks: { outputs: { newText: string }[] }[]): string[] {
  return chunks.map((c) => c.outputs[0]!.newText);
}

// Both detokenization paths: the windowed decode and the byte stream (tokenBytes).
describe.each([
  ['windowed detokenizer', false],
  ['byte-stream detokenizer', true],
])('%s', (_name, stream) => {
  beforeEach(() => {
    byteStream = stream;
  });
  afterEach(() => {
    byteStream = false;
  });

  describe('stop strings', () => {
    test('a stop string split across tokens is cut and never streamed', async () => {
      const engine = scripted('Hello STOP world');
      const { final, chunks } = await collect(engine, {
        promptTokenIds: PROMPT,
        params: params({ stop: ['STOP'], maxTokens: 40 }),
      });
      const out = final.outputs[0]!;
      expect(out.text).toBe('Hello ');
      expect(out.finishReason).toBe('stop');
      expect(out.stopReason).toBe('STOP');
      const parts = streamed(chunks);
      expect(parts.join('')).toBe('Hello ');
      // "S", "ST", "STO" were held back, not emitted and retracted.
      expect(parts.some((p) => p.includes('S'))).toBe(false);
      // The byte-level model emitted every byte of "STOP" as its own token.
      expect(out.tokenIds.length).toBe('Hello STOP'.length);
    });

    test('a partial match that diverges is released', async () => {
      const engine = scripted('x ST y STAR');
      const { final, chunks } = await collect(engine, {
        promptTokenIds: PROMPT,
        params: params({ stop: ['STOP', 'AR'], maxTokens: 40 }),
      });
      expect(final.outputs[0]!.text).toBe('x ST y ST');
      expect(final.outputs[0]!.stopReason).toBe('AR');
      expect(streamed(chunks).join('')).toBe('x ST y ST');
    });

    test('the earliest of several stop strings wins', async () => {
      const engine = scripted('abcdef');
      const { final } = await collect(engine, {
        promptTokenIds: PROMPT,
        params: params({ stop: ['def', 'bcd'], maxTokens: 40 }),
      });
      expect(final.outputs[0]!.text).toBe('a');
      expect(final.outputs[0]!.stopReason).toBe('bcd');
    });

    test('held-back text is flushed when the request ends by length', async () => {
      const engine = scripted('abcST');
      const { final, chunks } = await collect(engine, {
        promptTokenIds: PROMPT,
        params: params({ stop: ['STOP'], maxTokens: 5 }),
      });
      expect(final.outputs[0]!.finishReason).toBe('length');
      expect(final.outputs[0]!.text).toBe('abcST');
      expect(streamed(chunks).join('')).toBe('abcST');
    });
  });

  test('multi-byte UTF-8 characters split across tokens are never emitted broken', async () => {
    const text = 'héllo 世界 🎉 ok ∑';
    const engine = scripted(text);
    const { final, chunks } = await collect(engine, {
      promptTokenIds: PROMPT,
      params: params({ maxTokens: tok.encode(text).length }),
    });
    const parts = streamed(chunks);
    for (const p of parts) expect(p).not.toContain('\uFFFD');
    expect(parts.join('')).toBe(text);
    expect(final.outputs[0]!.text).toBe(text);
    // The 4-byte emoji took four steps but appeared once, whole.
    expect(parts).toContain('🎉');
  });
});

describe('stop tokens', () => {
  test('EOS stops with finish reason stop; its text is not emitted', async () => {
    const engine = scripted('hi', EOS);
    const { final } = await collect(engine, {
      promptTokenIds: PROMPT,
      params: params({ ignoreEos: false, maxTokens: 10 }),
    });
    const out = final.outputs[0]!;
    expect(out.finishReason).toBe('stop');
    expect(out.stopReason).toBeUndefined();
    expect(out.tokenIds).toEqual([...tok.encode('hi'), EOS]);
    expect(out.text).toBe('hi');
  });

  test('ignore_eos keeps generating to max_tokens', async () => {
    const engine = scripted('hi', EOS);
    const { final } = await collect(engine, { promptTokenIds: PROMPT, params: params({ maxTokens: 6 }) });
    expect(final.outputs[0]!.finishReason).toBe('length');
    expect(final.outputs[0]!.tokenIds).toHaveLength(6);
  });

  test('stop_token_ids stop with the id as stop reason', async () => {
    const engine = scripted('abc!def');
    const bang = '!'.charCodeAt(0);
    const { final } = await collect(engine, {
      promptTokenIds: PROMPT,
      params: params({ stopTokenIds: [bang], maxTokens: 20 }),
    });
    expect(final.outputs[0]!.text).toBe('abc');
    expect(final.outputs[0]!.stopReason).toBe(bang);
  });

  test('min_tokens masks EOS until reached', async () => {
    // The model wants EOS first, then "z" (the scripted logit is the only non-zero one).
    const engine = makeEngine({
      model: {
        logits: (_history, out) => {
          out[EOS] = 10;
          out['z'.charCodeAt(0)] = 5;
        },
      },
    }).engine;
    const { final } = await collect(engine, {
      promptTokenIds: PROMPT,
      params: params({ ignoreEos: false, minTokens: 3, maxTokens: 10 }),
    });
    expect(final.outputs[0]!.text).toBe('zzz');
    expect(final.outputs[0]!.finishReason).toBe('stop');
  });
});

test('max_tokens ends with finish reason length', async () => {
  const engine = scripted('abcdefgh');
  const { final, chunks } = await collect(engine, {
    promptTokenIds: PROMPT,
    params: params({ maxTokens: 3 }),
  });
  expect(final.outputs[0]!.text).toBe('abc');
  expect(final.outputs[0]!.finishReason).toBe('length');
  expect(chunks.at(-1)!.finished).toBe(true);
  expect(chunks.slice(0, -1).every((c) => !c.finished)).toBe(true);
});

test('logprobs: one entry per token, top alternatives best first, the greedy token on top', async () => {
  const { engine } = makeEngine();
  const { final, chunks } = await collect(engine, {
    promptTokenIds: tok.encode('logprobs'),
    params: params({ logprobs: 3, maxTokens: 5 }),
  });
  const lps = chunks.flatMap((c) => c.outputs[0]!.logprobs ?? []);
  expect(lps).toHaveLength(5);
  lps.forEach((lp, i) => {
    expect(lp.tokenId).toBe(final.outputs[0]!.tokenIds[i]);
    expect(lp.topLogprobs).toHaveLength(3);
    expect(lp.topLogprobs[0]!.tokenId).toBe(lp.tokenId);
    expect(lp.topLogprobs[0]!.logprob).toBeCloseTo(lp.logprob, 6);
    expect(lp.logprob).toBeLessThan(0);
    for (let j = 1; j < 3; j++)
      expect(lp.topLogprobs[j]!.logprob).toBeLessThanOrEqual(lp.topLogprobs[j - 1]!.logprob);
  });
});

test('without a tokenizer outputs carry token ids only', async () => {
  const { engine } = makeEngine({ noTokenizer: true });
  const { final } = await collect(engine, { promptTokenIds: [1, 2, 3], params: params({ maxTokens: 4 }) });
  expect(final.outputs[0]!.tokenIds).toHaveLength(4);
  expect(final.outputs[0]!.text).toBe('');
  expect(() => engine.addRequest({ promptTokenIds: [1], params: params({ stop: ['x'] }) })).toThrow(
    /tokenizer/,
  );
});

test('maxLogprobs raises the logprobs limit', async () => {
  const { engine } = makeEngine({ maxLogprobs: 50 });
  const { final } = await collect(engine, {
    promptTokenIds: [1, 2],
    params: params({ logprobs: 40, maxTokens: 1 }),
  });
  expect(final.outputs[0]!.logprobs?.[0]?.topLogprobs).toHaveLength(40);
  expect(() => engine.addRequest({ promptTokenIds: [1], params: params({ logprobs: 51 }) })).toThrow(
    /logprobs/,
  );
});
