// Helpers to build an engine over the tiny model and collect what it produces.

import { Engine } from '../../src/engine/engine.js';
import type { EngineOptions, RequestOutput, SamplingParams } from '../../src/engine/protocol.js';
import { defaultSamplingParams } from '../../src/engine/protocol.js';
import { ByteTokenizer } from './byte-tokenizer.js';
import { TinyModel, type TinyModelOptions } from './tiny-model.js';

export function makeEngine(
  opts: Partial<Omit<EngineOptions, 'model'>> & {
    model?: TinyModelOptions;
    noTokenizer?: boolean;
    /** Give the tokenizer tokenBytes(), so the engine detokenizes through its byte-stream path. */
    byteStream?: boolean;
  } = {},
): { engine: Engine; model: TinyModel; tokenizer: ByteTokenizer } {
  const model = new TinyModel(opts.model);
  const tokenizer = new ByteTokenizer({ byteStream: opts.byteStream ?? false });
  const { model: _m, noTokenizer, byteStream: _b, ...rest } = opts;
  const engine = new Engine({
    model,
    ...(noTokenizer ? {} : { tokenizer }),
    blockSize: 4,
    numBlocks: 256,
    maxNumSeqs: 16,
    maxNumBatchedTokens: 64,
    maxModelLen: 1024,
    ...rest,
  });
  return { engine, model, tokenizer };
}

export function params(overrides: Partial<SamplingParams> = {}): SamplingParams {
  return defaultSamplingParams({ temperature: 0, maxTokens: 12, ignoreEos: true, ...overrides });
}

/** Deterministic pseudo-random prompt of `len` byte tokens. */
export function prompt(seed: number, len: number): number[] {
  const out: number[] = [];
  let s = seed * 7919 + 1;
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out.push(s % 256);
  }
  return out;
}

/** Token ids of each choice of each final output. */
export function tokensOf(outs: readonly RequestOutput[]): number[][][] {
  return outs.map((o) => o.outputs.map((c) => c.tokenIds));
}
