// Checks EngineOptions once at construction and sizes the KV pool. A bad configuration is a
// server-side error (500): it comes from the operator, not from a request.

import { engineConfigInvalid } from '../errors.js';
import type { EngineOptions } from './protocol.js';

/** Validates the options and returns the number of KV blocks to allocate, including the pool's
 * null block (so numBlocks usable blocks when numBlocks is given). */
export function resolveKvCacheBlocks(opts: EngineOptions): number {
  checkOptions(opts);
  const totalBlocks =
    opts.numBlocks !== undefined
      ? opts.numBlocks + 1
      : Math.floor(opts.kvCacheMemoryBytes! / opts.model.kvCacheBytesPerBlock(opts.blockSize));
  if (totalBlocks < 2) {
    throw engineConfigInvalid(`the KV cache budget holds ${totalBlocks} blocks; at least 2 are needed`);
  }
  return totalBlocks;
}

function checkOptions(o: EngineOptions): void {
  const positive = (v: number | undefined, name: string) => {
    if (v === undefined || !Number.isInteger(v) || v < 1) {
      throw engineConfigInvalid(`${name} must be a positive integer, got ${v}`);
    }
  };
  positive(o.blockSize, 'blockSize');
  positive(o.maxNumSeqs, 'maxNumSeqs');
  positive(o.maxNumBatchedTokens, 'maxNumBatchedTokens');
  positive(o.maxModelLen, 'maxModelLen');
  // Every running sequence needs at least one token of budget per step, or the ones at the back of
  // the running list would never be scheduled.
  if (o.maxNumBatchedTokens < o.maxNumSeqs) {
    throw engineConfigInvalid(
      `maxNumBatchedTokens (${o.maxNumBatchedTokens}) must be at least maxNumSeqs (${o.maxNumSeqs})`,
    );
  }
  if ((o.numBlocks === undefined) === (o.kvCacheMemoryBytes === undefined)) {
    throw engineConfigInvalid('give exactly one of numBlocks and kvCacheMemoryBytes');
  }
  if (o.numBlocks !== undefined) positive(o.numBlocks, 'numBlocks');
  if (o.maxModelLen > o.model.info.maxPositionEmbeddings) {
    throw engineConfigInvalid(
      `maxModelLen ${o.maxModelLen} exceeds the model's maxPositionEmbeddings ${o.model.info.maxPositionEmbeddings}`,
    );
  }
  if (
    o.maxWaitingRequests !== undefined &&
    (!Number.isInteger(o.maxWaitingRequests) || o.maxWaitingRequests < 0)
  ) {
    throw engineConfigInvalid(
      `maxWaitingRequests must be a non-negative integer, got ${o.maxWaitingRequests}`,
    );
  }
}
