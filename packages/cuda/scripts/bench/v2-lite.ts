// DeepSeek-V2-Lite for the GPU benchmarks (decode-bench.ts on one GPU; the server's gpu-tp/tp-bench.ts
// under tensor parallelism): its config, a decode batch over a cache of `ctx` tokens, and the bytes a
// decode step must read at least (its floor, over the copy bandwidth).
import type { CommonAttentionMetadata, DeepseekConfig, ForwardBatch } from '@flashserve/core';
import { DEEPSEEK_V2_LITE_CONFIG } from '../../../models/src/index.js';

export const V2_LITE = DEEPSEEK_V2_LITE_CONFIG;

/** Decode batch: every request has `ctx` cached tokens and decodes token ctx+1. */
export function decodeBatch(B: number, ctx: number, blockSize: number, firstBlock: number): ForwardBatch {
  const seq = ctx + 1;
  const perReq = Math.ceil(seq / blockSize);
  const blockTables = new Int32Array(B * perReq);
  for (let r = 0; r < B; r++)
    for (let i = 0; i < perReq; i++) blockTables[r * perReq + i] = firstBlock + r * perReq + i;
  const positions = new Int32Array(B).fill(ctx);
  const slotMapping = Int32Array.from(
    { length: B },
    (_, r) => blockTables[r * perReq + Math.floor(ctx / blockSize)]! * blockSize + (ctx % blockSize),
  );
  const attention: CommonAttentionMetadata = {
    numReqs: B,
    numTokens: B,
    queryStartLoc: Int32Array.from({ length: B + 1 }, (_, i) => i),
    seqLens: new Int32Array(B).fill(seq),
    numComputedTokens: new Int32Array(B).fill(ctx),
    positions,
    slotMapping,
    blockTables,
    maxBlocksPerReq: perReq,
    blockSize,
    maxQueryLen: 1,
    maxSeqLen: seq,
  };
  return {
    tokenIds: Int32Array.from({ length: B }, (_, i) => (i * 7919 + 13) % 100000),
    attention,
    logitsIndices: Int32Array.from({ length: B }, (_, i) => i),
  };
}

/**
 * Bytes one GPU must read at least in a decode step: its active weights + the KV cache. Under tensor
 * parallelism of `tp` ranks (docs/tensor-parallel.md) each GPU reads its 1/tp of the head-split and
 * MLP weights and of the LM head, and all of what is replicated: the latent projection (kv_a), the
 * router, and the whole latent KV cache (MLA has one KV head). No q_lora (V2-Lite has none).
 */
export function floorBytes(
  c: DeepseekConfig,
  B: number,
  ctx: number,
  tp = 1,
): { weights: number; kv: number } {
  const H = c.hiddenSize;
  const moe = c.moe!;
  const heads = c.numAttentionHeads;
  const attnSplit =
    heads * (c.qkNopeHeadDim + c.qkRopeHeadDim) * H +
    heads * (c.qkNopeHeadDim + c.vHeadDim) * c.kvLoraRank +
    H * heads * c.vHeadDim;
  const attnReplicated = (c.kvLoraRank + c.qkRopeHeadDim) * H;
  const expert = 3 * H * moe.moeIntermediateSize;
  const E = moe.nRoutedExperts;
  const k = moe.numExpertsPerTok;
  const activeExperts = E * (1 - (1 - k / E) ** B); // expected distinct experts under uniform routing
  const moeLayers = c.numHiddenLayers - moe.firstKDenseReplace;
  const params =
    c.numHiddenLayers * (attnSplit / tp + attnReplicated) +
    (moe.firstKDenseReplace * 3 * H * c.intermediateSize) / tp +
    moeLayers * (((moe.nSharedExperts + activeExperts) * expert) / tp + E * H) +
    (c.vocabSize * H) / tp +
    B * H;
  return { weights: params * 2, kv: B * ctx * (c.kvLoraRank + c.qkRopeHeadDim) * 2 * c.numHiddenLayers };
}
