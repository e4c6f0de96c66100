// The scheduler contract, as the engine drives it. One engine step is:
//   schedule() -> build the batch -> model.forward -> onStepComputed() -> sample, append tokens,
//   finish() the sequences that stopped, addForkedChildren() the choices of n > 1 requests.
// Between steps the engine may add() new sequences and finish() aborted ones at any time.

import type { SchedulerOutput } from './output.js';
import type { Sequence } from './sequence.js';

export interface SchedulerConfig {
  /** Most sequences in one step. */
  readonly maxNumSeqs: number;
  /** Token budget of one step: prefill chunks plus one token per decoding sequence. */
  readonly maxNumBatchedTokens: number;
}

export interface SchedulerApi<S extends Sequence> {
  /** Queues a new sequence at the back of the waiting queue. */
  add(seq: S): void;
  /** Picks this step's sequences and token counts under the budget; allocates their KV slots,
   * preempting the most recently admitted running sequences when the cache is full. Waiting
   * sequences are admitted in order only in a step that preempted nothing. */
  schedule(): SchedulerOutput<S>;
  /** Called once the forward pass of `out` succeeded: advances computed counts and offers full
   * blocks to the prefix cache. */
  onStepComputed(out: SchedulerOutput<S>): void;
  /** Puts the choices forked from `parent` straight into the running set (their blocks are already
   * shared), taking over the slots the parent reserved for them. */
  addForkedChildren(parent: S, children: readonly S[]): void;
  /** Ends a sequence in any state and frees its blocks. Idempotent. */
  finish(seq: S): void;
  readonly numWaiting: number;
  readonly numRunning: number;
}
