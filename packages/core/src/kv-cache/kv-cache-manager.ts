// Maps sequences' tokens to KV cache blocks: admission with prefix-cache reuse, growth, fork for the
// n choices of one request, and release. The scheduler talks only to this class; BlockPool stays
// behind it.
//
// Units: tokens unless a name says blocks. A sequence's "computed" tokens are those whose KV is in
// the cache; the manager trusts the caller's count (the engine advances it after each forward).

import { BlockPool } from './block-pool.js';
import { extendBlockHashes } from './prefix-hash.js';
import type { SeqBlocks } from './seq-blocks.js';

export interface KvCacheManagerOptions {
  /** Blocks in the pool, including the reserved null block. */
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  /** Mixed into every block hash (e.g. a model or adapter identity). */
  readonly extraKey?: string;
}

/** The longest cached prefix of a sequence, found before admission. */
export interface CachedPrefix {
  readonly blockIds: readonly number[];
  /** Tokens covered: blockIds.length * blockSize. */
  readonly numTokens: number;
  /** Tokens that were looked up (for the hit-rate counters). */
  readonly numQueriedTokens: number;
}

export interface KvCacheCounters {
  /** Prompt tokens looked up in the prefix cache on admission. */
  prefixCacheQueries: number;
  /** Of those, tokens served from the cache. */
  prefixCacheHits: number;
}

export const NO_PREFIX: CachedPrefix = { blockIds: [], numTokens: 0, numQueriedTokens: 0 };

export class KvCacheManager {
  readonly pool: BlockPool;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  readonly counters: KvCacheCounters = { prefixCacheQueries: 0, prefixCacheHits: 0 };
  readonly #extraKey: string | undefined;

  constructor(opts: KvCacheManagerOptions) {
    if (!Number.isInteger(opts.blockSize) || opts.blockSize < 1) {
      throw new RangeError(`blockSize must be a positive integer, got ${opts.blockSize}`);
    }
    this.pool = new BlockPool(opts.numBlocks);
    this.blockSize = opts.blockSize;
    this.enablePrefixCaching = opts.enablePrefixCaching;
    this.#extraKey = opts.extraKey;
  }

  /** Blocks needed to hold numTokens tokens. */
  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /**
   * Finds the longest run of cached full blocks at the start of tokens[0, numTokens).
   * NOTE: at most numTokens - 1 tokens can hit: the last token must be computed again to produce the
   * logits the next token is sampled from, so a fully cached prompt still recomputes its last block.
   */
  findCachedPrefix(seq: SeqBlocks, tokens: ArrayLike<number>, numTokens: number): CachedPrefix {
    if (!this.enablePrefixCaching) return NO_PREFIX;
    const maxBlocks = Math.floor((numTokens - 1) / this.blockSize);
    extendBlockHashes(seq.hashes, tokens, maxBlocks * this.blockSize, this.blockSize, this.#extraKey);
    const blockIds: number[] = [];
    for (let i = 0; i < maxBlocks; i++) {
      const b = this.pool.lookup(seq.hashes[i]!);
      if (b === undefined) break;
      blockIds.push(b);
    }
    return { blockIds, numTokens: blockIds.length * this.blockSize, numQueriedTokens: numTokens };
  }

  /**
   * Makes room for numNewTokens more tokens after numComputedTokens. On admission, `prefix` (from
   * findCachedPrefix, with numComputedTokens === prefix.numTokens) is adopted first.
   *
   *   | prefix hit (shared) | computed | new tokens (this step) | ... |
   *   |<------------- numComputedTokens ->|<--- numNewTokens --->|
   *   |<-------- blocks already held or adopted -------->|<- allocated here ->|
   *
   * All or nothing: returns false, changing nothing, when the free queue cannot cover the new blocks
   * (the scheduler then preempts). Cached blocks adopted from the free queue count against it.
   */
  allocateSlots(
    seq: SeqBlocks,
    numComputedTokens: number,
    numNewTokens: number,
    prefix?: CachedPrefix,
  ): boolean {
    if (prefix === undefined) {
      // The decode fast path: most steps need no new block at all.
      const needed = this.blocksFor(numComputedTokens + numNewTokens) - seq.blockIds.length;
      if (needed <= 0) return true;
      if (needed > this.pool.numFreeBlocks) return false;
      for (let i = 0; i < needed; i++) seq.blockIds.push(this.pool.allocate());
      return true;
    }
    const held = seq.blockIds.length + prefix.blockIds.length;
    const needed = this.blocksFor(numComputedTokens + numNewTokens) - held;
    let idleHits = 0;
    for (const b of prefix.blockIds) if (this.pool.refCount(b) === 0) idleHits++;
    if (Math.max(needed, 0) + idleHits > this.pool.numFreeBlocks) return false;

    this.counters.prefixCacheQueries += prefix.numQueriedTokens;
    this.counters.prefixCacheHits += prefix.numTokens;
    for (const b of prefix.blockIds) {
      this.pool.touch(b);
      seq.blockIds.push(b);
    }
    // Adopted blocks are already in the cache map.
    seq.numCachedBlocks = seq.blockIds.length;
    for (let i = 0; i < needed; i++) seq.blockIds.push(this.pool.allocate());
    return true;
  }

  /** Offers the sequence's newly full and computed blocks to the prefix cache. Called after a
   * forward pass succeeded, so a failed step never advertises garbage KV. */
  cacheComputedBlocks(seq: SeqBlocks, tokens: ArrayLike<number>, numComputedTokens: number): void {
    if (!this.enablePrefixCaching) return;
    const numFull = Math.min(Math.floor(numComputedTokens / this.blockSize), seq.blockIds.length);
    if (numFull <= seq.numCachedBlocks) return;
    extendBlockHashes(seq.hashes, tokens, numFull * this.blockSize, this.blockSize, this.#extraKey);
    for (let i = seq.numCachedBlocks; i < numFull; i++) this.pool.cache(seq.blockIds[i]!, seq.hashes[i]!);
    seq.numCachedBlocks = numFull;
  }

  /**
   * Makes `child` (an empty sequence) share the parent's full computed blocks (reference counted, no
   * copy). The parent's partial last block is not shared: the child recomputes those few tokens into
   * a block of its own, which avoids a device-side copy-on-write. Returns the child's computed
   * token count.
   */
  fork(parent: SeqBlocks, parentComputedTokens: number, child: SeqBlocks): number {
    const numShared = Math.min(Math.floor(parentComputedTokens / this.blockSize), parent.blockIds.length);
    for (let i = 0; i < numShared; i++) {
      const b = parent.blockIds[i]!;
      this.pool.touch(b);
      child.blockIds.push(b);
    }
    for (let i = 0; i < Math.min(numShared, parent.hashes.length); i++) child.hashes.push(parent.hashes[i]!);
    child.numCachedBlocks = Math.min(numShared, parent.numCachedBlocks);
    return numShared * this.blockSize;
  }

  /**
   * Releases every block of the sequence. NOTE: tail first, so that in the free queue a sequence's
   * later blocks (the least likely to be shared) are evicted before its earlier ones.
   */
  free(seq: SeqBlocks): void {
    const ids = seq.blockIds;
    for (let i = ids.length - 1; i >= 0; i--) this.pool.release(ids[i]!);
    ids.length = 0;
    seq.numCachedBlocks = 0;
  }

  get numFreeBlocks(): number {
    return this.pool.numFreeBlocks;
  }

  get numUsableBlocks(): number {
    return this.pool.numUsableBlocks;
  }

  get usage(): number {
    return this.pool.usage;
  }
}
