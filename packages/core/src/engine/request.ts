// Engine-side state of one request: its choices, its stream and how it reports progress.

import type { Rng } from '../sampling/rng.js';
import type { Choice } from './choice.js';
import type { CompletionOutput, RequestOutput, SamplingParams, TokenLogprob } from './protocol.js';
import type { RequestStream } from './request-stream.js';
import type { StopStringMatcher } from './stop-checker.js';

export class RequestState {
  readonly requestId: string;
  readonly promptTokenIds: number[];
  readonly params: SamplingParams;
  readonly arrivalTime: number;
  firstTokenTime: number | undefined;
  finishedTime: number | undefined;
  /** Choice 0 from the start; choices 1..n-1 once they fork after the prompt's prefill. */
  readonly choices: Choice[] = [];
  /** One random stream per choice, fixed at arrival. */
  readonly rngs: readonly Rng[];
  /** Token ids masked before minTokens: stop ids, and EOS unless ignoreEos. */
  readonly minTokensBans: readonly number[];
  readonly stopMatcher: StopStringMatcher;
  readonly stream: RequestStream;
  finished = false;
  error: Error | undefined;
  /** Has outputs to report at the end of this step. */
  dirty = false;
  /** With params.promptLogprobs: entry i is prompt token i's logprob (null for token 0), filled as
   * the prompt's chunks are computed. */
  readonly promptLogprobs: (TokenLogprob | null)[] | undefined;

  constructor(init: {
    requestId: string;
    promptTokenIds: number[];
    params: SamplingParams;
    arrivalTime: number;
    rngs: readonly Rng[];
    minTokensBans: readonly number[];
    stopMatcher: StopStringMatcher;
    stream: RequestStream;
  }) {
    this.requestId = init.requestId;
    this.promptTokenIds = init.promptTokenIds;
    this.params = init.params;
    this.arrivalTime = init.arrivalTime;
    this.rngs = init.rngs;
    this.minTokensBans = init.minTokensBans;
    this.stopMatcher = init.stopMatcher;
    this.stream = init.stream;
    if (init.params.promptLogprobs !== undefined) {
      this.promptLogprobs = new Array<TokenLogprob | null>(init.promptTokenIds.length).fill(null);
    }
  }

  get allChoicesFinished(): boolean {
    if (this.choices.length < this.params.n) return false;
    for (const c of this.choices) if (c.finishReason === null) return false;
    return true;
  }

  /** Builds this step's output and clears the per-step fields of every choice. */
  takeOutput(): RequestOutput {
    const outputs: CompletionOutput[] = [];
    for (let i = 0; i < this.params.n; i++) {
      const c = this.choices[i];
      if (c === undefined) {
        // Not forked yet: the request ended (abort, failure) before its prompt finished.
        const finishReason = this.finished ? 'abort' : null;
        outputs.push({ index: i, tokenIds: [], text: '', newTokenIds: [], newText: '', finishReason });
        continue;
      }
      const out: CompletionOutput = {
        index: i,
        tokenIds: c.outputTokenIds,
        text: c.emittedText,
        newTokenIds: c.newTokenIds,
        newText: c.stepText,
        finishReason: c.finishReason,
      };
      if (this.params.logprobs !== undefined) out.logprobs = c.newLogprobs ?? [];
      if (c.stopReason !== undefined) out.stopReason = c.stopReason;
      outputs.push(out);
      c.newTokenIds = [];
      c.newLogprobs = undefined;
      c.stepText = '';
    }
    this.dirty = false;
    const metrics: RequestOutput['metrics'] = {
      arrivalTime: this.arrivalTime,
      numCachedPromptTokens: this.choices[0]?.numCachedPromptTokens ?? 0,
    };
    if (this.firstTokenTime !== undefined) metrics.firstTokenTime = this.firstTokenTime;
    if (this.finishedTime !== undefined) metrics.finishedTime = this.finishedTime;
    const result: RequestOutput = {
      requestId: this.requestId,
      promptTokenIds: this.promptTokenIds,
      outputs,
      finished: this.finished,
      metrics,
    };
    if (this.error !== undefined) result.error = this.error;
    // Complete once the first token was sampled: the whole prompt has been through the model.
    if (this.promptLogprobs !== undefined && this.firstTokenTime !== undefined) {
      result.promptLogprobs = this.promptLogprobs;
    }
    return result;
  }
}
