// The scheduling state of one sequence: one choice of one request. The engine's per-choice state
// extends this class; the scheduler and the KV cache manager see only these fields.

import { SeqBlocks } from '../kv-cache/seq-blocks.js';

export type SequenceStatus = 'waiting' | 'running' | 'finished';

export class Sequence {
  /** Prompt then generated tokens. Only the engine appends, after sampling. */
  readonly tokens: number[];
  readonly promptLen: number;
  /** Tokens whose KV is in the cache (reset to 0 by preemption). */
  numComputedTokens = 0;
  readonly blocks = new SeqBlocks();
  status: SequenceStatus = 'waiting';
  /** Slots this sequence will take under maxNumSeqs once running: 1, or n before the first sample of
   * an n-choice request (its choices fork from it and must fit too). */
  reservedSeqs: number;
  /** Prompt tokens served from the prefix cache on first admission; undefined before it. */
  numCachedPromptTokens: number | undefined;
  /** How many times this sequence was preempted. */
  numPreemptions = 0;
  /** Wants logits at every prompt position (prompt logprobs), not only where it samples. Such a
   * sequence skips the prefix cache: a cached block holds KV, not the logits its tokens produced. */
  wantsPromptLogits = false;

  constructor(tokens: number[], promptLen: number, reservedSeqs = 1) {
    this.tokens = tokens;
    this.promptLen = promptLen;
    this.reservedSeqs = reservedSeqs;
  }

  get numTokens(): number {
    return this.tokens.length;
  }

  /** True while prompt tokens remain to be computed (chunked prefill in progress). */
  get isPrefilling(): boolean {
    return this.numComputedTokens < this.promptLen;
  }
}
