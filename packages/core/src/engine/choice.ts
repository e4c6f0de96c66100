// One choice of a request: its scheduling state (Sequence) plus what sampling, stopping and
// detokenization need. Choice 0 is created with the request; the others fork from it when the
// prompt's prefill finishes.

import type { Rng } from '../sampling/rng.js';
import type { SamplingRow } from '../sampling/sampler.js';
import { Sequence } from '../scheduler/sequence.js';
import type { Detokenizer } from './detokenizer.js';
import type { FinishReason, SamplingParams, TokenLogprob } from './protocol.js';
import type { RequestState } from './request.js';

const NO_TOKENS: readonly number[] = [];

export class Choice extends Sequence implements SamplingRow {
  readonly request: RequestState;
  readonly index: number;
  readonly rng: Rng;
  readonly outputCounts = new Map<number, number>();
  promptTokenSet: Set<number> | undefined;
  logitsRow = 0;
  readonly detokenizer: Detokenizer | undefined;
  /** Detokenized text so far, stop strings cut off; may end in text held back from streaming. */
  text = '';
  /** Characters of `text` already emitted. */
  emittedLength = 0;
  finishReason: FinishReason | null = null;
  stopReason: string | number | undefined;
  /** Generated tokens, the array every output of this choice shares (see CompletionOutput.tokenIds). */
  readonly outputTokenIds: number[] = [];
  // This step's additions, cleared once emitted.
  newTokenIds: number[] = [];
  newLogprobs: TokenLogprob[] | undefined;

  constructor(
    request: RequestState,
    index: number,
    tokens: number[],
    rng: Rng,
    detokenizer: Detokenizer | undefined,
    reservedSeqs: number,
  ) {
    super(tokens, request.promptTokenIds.length, reservedSeqs);
    this.request = request;
    this.index = index;
    this.rng = rng;
    this.detokenizer = detokenizer;
  }

  get params(): SamplingParams {
    return this.request.params;
  }

  get promptTokens(): readonly number[] {
    return this.request.promptTokenIds;
  }

  get numOutputTokens(): number {
    return this.tokens.length - this.promptLen;
  }

  /** EOS and stop ids are masked until minTokens tokens were generated. */
  get bannedTokenIds(): readonly number[] {
    const min = this.request.params.minTokens ?? 0;
    return this.numOutputTokens < min ? this.request.minTokensBans : NO_TOKENS;
  }
}
