// The per-step batch description every attention backend starts from, built once per engine step
// by the engine from the scheduler's output and the KV cache manager's block tables.
//
// Layout: the step's tokens are flattened request by request; request i owns query rows
// [queryStartLoc[i], queryStartLoc[i+1]). Units are tokens unless a name says otherwise.

export interface CommonAttentionMetadata {
  readonly numReqs: number;
  /** Total query tokens in this step (sum of query lengths). */
  readonly numTokens: number;
  /** [numReqs + 1] prefix sums of query lengths. */
  readonly queryStartLoc: Int32Array;
  /** [numReqs] tokens in the cache for each request once this step's tokens are written. */
  readonly seqLens: Int32Array;
  /** [numReqs] tokens already in the cache before this step (seqLens - queryLen). */
  readonly numComputedTokens: Int32Array;
  /** [numTokens] absolute position of each query token. */
  readonly positions: Int32Array;
  /** [numTokens] cache slot (blockId * blockSize + offset) each new token's KV is written to. */
  readonly slotMapping: Int32Array;
  /** [numReqs * maxBlocksPerReq] block ids per request, row-major; unused entries are 0. */
  readonly blockTables: Int32Array;
  readonly maxBlocksPerReq: number;
  readonly blockSize: number;
  readonly maxQueryLen: number;
  readonly maxSeqLen: number;
}
