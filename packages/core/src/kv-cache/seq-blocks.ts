// One sequence's block table as the KV cache manager sees it. Opaque to the scheduler, which only
// passes it back to the manager; the engine reads blockIds to build the step's block tables.

import type { BlockHash } from './prefix-hash.js';

export class SeqBlocks {
  /** Block ids in token order: block i holds tokens [i * blockSize, (i + 1) * blockSize). */
  readonly blockIds: number[] = [];
  /** Prefix hashes of the sequence's first full blocks. They depend only on the tokens, so they
   * survive preemption and make re-admission a cache lookup. */
  readonly hashes: BlockHash[] = [];
  /** How many of blockIds have been offered to the prefix cache. */
  numCachedBlocks = 0;
}
