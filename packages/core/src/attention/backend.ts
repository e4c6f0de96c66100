// The attention-backend contract, in the shape of vLLM v1's split:
//   - AttentionBackend: static facts and refusals with reasons (per process);
//   - AttentionMetadataBuilder: turns CommonAttentionMetadata into the backend's own metadata, once
//     per engine step, shared by every layer (the Hopper kernel's tile schedule is built here);
//   - MlaAttentionImpl: per layer; writes the step's new latent KV rows into the paged cache and
//     computes attention.
//
// Only MLA (one latent "KV head" of kvLoraRank + qkRopeHeadDim numbers per token) is defined today.

import type { Device, DeviceKind, DType, Tensor } from '../device/device.js';
import type { CommonAttentionMetadata } from './common-metadata.js';

/** What a backend must know about the model's attention to decide whether it can run it. */
export interface MlaModelSpec {
  readonly numLayers: number;
  /** Query heads on this rank. */
  readonly numHeads: number;
  readonly kvLoraRank: number;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
}

export interface BackendSelectionContext {
  readonly device: Device;
  readonly model: MlaModelSpec;
  /** Block size asked for by the user, if any; otherwise the backend's preferred one is used. */
  readonly blockSize?: number;
}

/** Shape and size of one layer's paged cache: [numBlocks, blockSize, 1, entryWidth]. */
export interface KvCacheLayout {
  readonly blockSize: number;
  /** Numbers per cached token: kvLoraRank + qkRopeHeadDim (576 for every DeepSeek model). */
  readonly entryWidth: number;
  readonly dtype: DType;
  /** Bytes one block takes across all layers: what the memory budget is divided by. */
  readonly bytesPerBlock: number;
}

/** One layer's paged latent cache, owned by the backend's device. */
export interface KvCache {
  readonly layout: KvCacheLayout;
  readonly numBlocks: number;
  /** [numBlocks, blockSize, 1, entryWidth] */
  readonly tensor: Tensor;
}

/** Per-layer weights an MLA implementation may need to absorb or decompress. */
export interface MlaLayerWeights {
  /** [numHeads, qkNopeHeadDim, kvLoraRank]: keys are W_UK c_kv per head. */
  readonly wUk: Tensor;
  /** [numHeads, vHeadDim, kvLoraRank]: values are W_UV c_kv per head. */
  readonly wUv: Tensor;
  /** 1/sqrt(qkNope + qkRope), times mscale^2 under YaRN. */
  readonly softmaxScale: number;
}

export interface MlaForwardInputs {
  /** [numTokens, numHeads, qkNopeHeadDim + qkRopeHeadDim], RoPE already applied to the rope part. */
  readonly q: Tensor;
  /** [numTokens, kvLoraRank], normalised latent of the step's new tokens. */
  readonly cKv: Tensor;
  /** [numTokens, qkRopeHeadDim], RoPE already applied. */
  readonly kPe: Tensor;
}

export interface AttentionMetadataBuilder<M> {
  /** Called once per engine step, before any layer runs. */
  build(common: CommonAttentionMetadata): M;
}

export interface MlaAttentionImpl<M> {
  /** Called once per layer per step. Writes [cKv ; kPe] rows at common.slotMapping, then attends
   * every query token over its request's cached tokens (causal within the step's tokens).
   * Returns [numTokens, numHeads, vHeadDim]: per-head values before o_proj. */
  forward(inputs: MlaForwardInputs, cache: KvCache, weights: MlaLayerWeights, metadata: M): Tensor;
}

export interface AttentionBackend<M = unknown> {
  /** Registry name, lower-kebab: "reference-mla", "flashmla", "cuda-mla". */
  readonly name: string;
  readonly deviceKinds: readonly DeviceKind[];
  /** Higher wins under "auto" among backends that support the configuration. */
  readonly priority: number;
  /** Reasons this backend cannot run the given configuration; empty means it can. */
  unsupportedReasons(ctx: BackendSelectionContext): string[];
  /** The cache layout this backend wants for the model (block size resolved). */
  cacheLayout(ctx: BackendSelectionContext): KvCacheLayout;
  /** Allocates one layer's cache on the device. */
  allocateCache(device: Device, layout: KvCacheLayout, numBlocks: number): KvCache;
  metadataBuilder(device: Device, model: MlaModelSpec, layout: KvCacheLayout): AttentionMetadataBuilder<M>;
  impl(device: Device, model: MlaModelSpec): MlaAttentionImpl<M>;
}
