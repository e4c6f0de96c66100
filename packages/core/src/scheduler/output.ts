// What one scheduling step decided; handed from the scheduler to the engine, which builds the forward
// batch from it. Plain data: sequences in batch order with their token counts.

import type { Sequence } from './sequence.js';

export interface SchedulerOutput<S extends Sequence = Sequence> {
  /** Sequences in this step, in batch order (running ones first, then newly admitted). */
  readonly scheduled: readonly S[];
  /** numNewTokens[i] tokens of scheduled[i] are computed this step, starting at its
   * numComputedTokens. */
  readonly numNewTokens: readonly number[];
  readonly totalNumTokens: number;
  /** Sequences preempted this step (blocks freed, back at the front of the waiting queue). */
  readonly preempted: readonly S[];
}
