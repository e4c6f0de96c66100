import { describe, expect, test } from 'vitest';
import { defaultSamplingParams, type SamplingParams } from '../engine/protocol.js';
import { HostSampler } from './host-sampler.js';
import { Rng } from './rng.js';
import type { SamplingRow } from './sampler.js';

function row(p: Partial<SamplingParams>, extra: Partial<SamplingRow> = {}, seed = 1): SamplingRow {
  return {
    logitsRow: 0,
    params: defaultSamplingParams(p),
    rng: new Rng(seed),
    promptTokens: [],
    outputCounts: new Map(),
    bannedTokenIds: [],
    promptTokenSet: undefined,
    ...extra,
  };
}

const logits = Float32Array.from([1, 3, 2, 0.5, 2.9, -1]);
const sampler = new HostSampler();
const draw = (r: SamplingRow, l = logits) => sampler.sampleHost(l, l.length, [r])[0]!.tokenId;

function histogram(p: Partial<SamplingParams>, n = 4000, l = logits): number[] {
  const counts = new Array(l.length).fill(0);
  const r = row(p, {}, 7);
  for (let i = 0; i < n; i++) counts[draw(r, l)]++;
  return counts.map((c) => c / n);
}

describe('HostSampler', () => {
  test('temperature 0 is argmax; top_k 1 is argmax at any temperature', () => {
    expect(draw(row({ temperature: 0 }))).toBe(1);
    expect(histogram({ temperature: 5, topK: 1 }, 200)[1]).toBe(1);
  });

  test('temperature 1 matches softmax', () => {
    const h = histogram({ temperature: 1 }, 20000);
    const e = Array.from(logits, Math.exp);
    const z = e.reduce((a, b) => a + b);
    for (const [i, v] of e.entries()) expect(h[i]).toBeCloseTo(v / z, 1);
  });

  test('top_k, top_p and min_p keep only the head of the distribution', () => {
    const k2 = histogram({ topK: 2 });
    expect(k2[1]! + k2[4]!).toBe(1);
    // softmax: p(1)=.38 p(4)=.35 p(2)=.14 ...: top_p 0.5 needs tokens 1 and 4.
    const p5 = histogram({ topP: 0.5 });
    expect(p5[1]! + p5[4]!).toBe(1);
    expect(p5[1]).toBeGreaterThan(0.3);
    // min_p 0.5 keeps tokens with p >= 0.5 * p(1): tokens 1 and 4 (e^-0.1 = .9), not 2 (e^-1 = .37).
    const m5 = histogram({ minP: 0.5 });
    expect(m5[1]! + m5[4]!).toBe(1);
  });

  test('top_p over a large vocabulary grows its sorted head until the nucleus fits', () => {
    const flat = new Float32Array(5000).fill(0);
    flat[4321] = 0.5;
    const h = histogram({ topP: 0.9 }, 2000, flat);
    // Almost flat: the nucleus holds ~90% of 5000 tokens, far past the first head of 64.
    expect(h.filter((v) => v > 0).length).toBeGreaterThan(600);
  });

  test('the same seed gives the same tokens; another seed differs', () => {
    const seq = (seed: number) => {
      const r = row({ temperature: 1 }, {}, seed);
      return Array.from({ length: 50 }, () => draw(r));
    };
    expect(seq(3)).toEqual(seq(3));
    expect(seq(3)).not.toEqual(seq(4));
  });

  test('penalties: repetition divides positive logits, frequency and presence subtract', () => {
    const l = Float32Array.from([2, 1.9, 0]);
    expect(draw(row({ temperature: 0 }), l)).toBe(0);
    expect(draw(row({ temperature: 0, repetitionPenalty: 1.2 }, { promptTokens: [0] }), l)).toBe(1);
    expect(draw(row({ temperature: 0, presencePenalty: 0.2 }, { outputCounts: new Map([[0, 1]]) }), l)).toBe(
      1,
    );
    expect(
      draw(row({ temperature: 0, frequencyPenalty: 0.05 }, { outputCounts: new Map([[0, 3]]) }), l),
    ).toBe(1);
    expect(
      draw(row({ temperature: 0, frequencyPenalty: 0.05 }, { outputCounts: new Map([[0, 1]]) }), l),
    ).toBe(0);
    expect(draw(row({ temperature: 0 }, { bannedTokenIds: [0] }), l)).toBe(1);
  });

  test('a logit bias is added before sampling; a ban still wins over it', () => {
    const l = Float32Array.from([2, 1.9, 0]);
    expect(draw(row({ temperature: 0, logitBias: new Map([[2, 2.5]]) }), l)).toBe(2);
    expect(draw(row({ temperature: 0, logitBias: new Map([[0, -0.2]]) }), l)).toBe(1);
    expect(histogram({ temperature: 1, logitBias: new Map([[5, 100]]) }, 200)[5]).toBe(1);
    expect(draw(row({ temperature: 0, logitBias: new Map([[2, 100]]) }, { bannedTokenIds: [2] }), l)).toBe(0);
    // Logprobs stay those of the raw logits.
    const s = sampler.sampleHost(logits, logits.length, [
      row({ temperature: 0, logprobs: 0, logitBias: new Map([[0, 50]]) }),
    ])[0]!;
    expect(s.tokenId).toBe(0);
    const lse = Math.log(Array.from(logits, Math.exp).reduce((a, b) => a + b));
    expect(s.logprob!.logprob).toBeCloseTo(1 - lse, 5);
  });

  test('logprobs are the raw log-softmax, with the top alternatives best first', () => {
    const s = sampler.sampleHost(logits, logits.length, [row({ temperature: 0, logprobs: 2 })])[0]!;
    const lse = Math.log(Array.from(logits, Math.exp).reduce((a, b) => a + b));
    expect(s.logprob!.logprob).toBeCloseTo(3 - lse, 5);
    expect(s.logprob!.topLogprobs.map((t) => t.tokenId)).toEqual([1, 4]);
    expect(sampler.sampleHost(logits, logits.length, [row({ temperature: 0 })])[0]!.logprob).toBeUndefined();
  });

  test('rows may share a logits row and read others', () => {
    const two = Float32Array.from([0, 5, 5, 0]);
    const out = sampler.sampleHost(two, 2, [
      row({ temperature: 0 }, { logitsRow: 1 }),
      row({ temperature: 0 }),
    ]);
    expect(out.map((s) => s.tokenId)).toEqual([0, 1]);
  });
});
