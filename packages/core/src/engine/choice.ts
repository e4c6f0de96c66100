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
  /** Text emitted so far (CompletionOutput.text). Grown by concatenation only, never sliced, so
   * V8 keeps it a rope and appending stays O(1) however long the output gets. */
  emittedText = '';
  /** Text emitted during the current step (CompletionOutput.newText). */
  stepText = '';
  /** Decoded text held back because it could be the start of a stop string (shorter than the
   * longest stop string). */
  heldText = '';
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

  /** Releases text for streaming. */
  emit(text: string): void {
    if (text.length === 0) return;
    this.emittedText += text;
    this.stepText += text;
  }

  /** Emits the held-back text: the choice ended without completing a stop string. */
  flushHeld(): void {
    this.emit(this.heldText);
    this.heldText = '';
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
