// The Sampler contract: picks one token per row of the step's logits. It receives the logits as the
// device tensor model.forward returned, so a GPU sampler can pick tokens on the device and copy back
// only ids; the host implementation reads the whole [rows, vocab] matrix back and samples on the CPU.

import type { Device, Tensor } from '../device/device.js';
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
  /** Called once per step with the step's logits [numLogitsRows, vocabSize] on `device`. Returns one
   * token per entry of `rows`. Reads but does not release `logits` (the engine does). On an
   * asynchronous device this is where the step first waits for the model. */
  sample(logits: Tensor, device: Device, rows: readonly SamplingRow[]): SampledToken[];
  /** OPTIONAL (async scheduling): queues the same sampling without waiting for it. The sampled ids are
   * written, in stream order, into `into[0 .. rows.length)` on the device (i32, at least rows.length
   * long), where the next step's forward can read them (ForwardBatch.prevTokenIds); `wait()` returns
   * what `sample` would have. Returns undefined when this sampler cannot for these rows: then the
   * engine calls `sample`. At most two results may be outstanding (unwaited) at a time. */
  sampleAsync?(
    logits: Tensor,
    device: Device,
    rows: readonly SamplingRow[],
    into: Tensor,
  ): PendingSample | undefined;
}

/** A sampling queued on the device. */
export interface PendingSample {
  /** Waits for the sampling (and so for the step before it) and returns one token per row; calling it
   * again returns the same result. */
  wait(): SampledToken[];
}
