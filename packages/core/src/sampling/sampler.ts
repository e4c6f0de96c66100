// The Sampler contract: picks one token per row of the step's logits. The host implementation reads
// logits on the CPU; a GPU sampler can replace it behind the same interface.

import type { SamplingParams, TokenLogprob } from '../engine/protocol.js';
import type { Rng } from './rng.js';

/** What the sampler needs to know about one sequence. */
export interface SamplingRow {
  /** Row of the logits matrix to sample from (several rows may share one, e.g. n choices). */
  readonly logitsRow: number;
  readonly params: SamplingParams;
  readonly rng: Rng;
  /** Prompt tokens, for the repetition penalty. */
  readonly promptTokens: readonly number[];
  /** Generated token -> times generated, for the presence, frequency and repetition penalties. */
  readonly outputCounts: ReadonlyMap<number, number>;
  /** Tokens that may not be sampled now (EOS and stop ids before minTokens). */
  readonly bannedTokenIds: readonly number[];
  /** Cache slot the sampler may use for per-sequence data derived once (e.g. the prompt's token set). */
  promptTokenSet: Set<number> | undefined;
}

export interface SampledToken {
  tokenId: number;
  /** Present when params.logprobs is set. */
  logprob: TokenLogprob | undefined;
}

export interface Sampler {
  /** logits: [numRows, vocabSize] row-major. Returns one sampled token per entry of `rows`. */
  sample(logits: Float32Array, vocabSize: number, rows: readonly SamplingRow[]): SampledToken[];
}
