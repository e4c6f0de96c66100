// The Model contract the engine drives. The engine owns scheduling, the KV cache manager and sampling;
// a model owns its weights, its device and its per-layer paged caches (allocated through its
// attention backend). The real DeepSeek model (packages/models) and the tests' tiny models both
// implement this.

import type { CommonAttentionMetadata } from '../attention/common-metadata.js';
import type { Device, Tensor } from '../device/device.js';

export interface ModelInfo {
  /** Name reported by /v1/models unless --served-model-name says otherwise. */
  readonly name: string;
  readonly vocabSize: number;
  /** Longest sequence (prompt + output) the model supports. */
  readonly maxPositionEmbeddings: number;
}

/** One forward pass over the flattened batch of a step. */
export interface ForwardBatch {
  /** [numTokens] */
  readonly tokenIds: Int32Array;
  readonly attention: CommonAttentionMetadata;
  /** Rows of the flattened batch whose logits are wanted (the last scheduled token of each request
   * that samples this step), in order. */
  readonly logitsIndices: Int32Array;
  /** Set when the engine runs this forward inside `model.device.graph(graphKey, ...)`: a model spread
   * over several devices runs its other ranks' forward through their own graphs under the same key. */
  readonly graphKey?: string;
  /** Async scheduling: some tokens of this step were sampled by the previous step and are still only on
   * the device. Token t is `ids[rows[t]]` where rows[t] >= 0 (tokenIds[t] is a placeholder there), and
   * tokenIds[t] where rows[t] is -1. Only given to a model whose `readsDeviceTokenIds` is true; it
   * merges them on the device (Device.mergeTokenIds) before the embedding. */
  readonly prevTokenIds?: DeviceTokenIds;
}

export interface DeviceTokenIds {
  /** i32 [M]: the previous step's sampled ids, in its sampling-row order. */
  readonly ids: Tensor;
  /** [numTokens] */
  readonly rows: Int32Array;
}

export interface Model {
  readonly info: ModelInfo;
  readonly device: Device;
  /** Bytes one KV block of `blockSize` tokens takes across all layers, for sizing the pool. */
  kvCacheBytesPerBlock(blockSize: number): number;
  /** Allocates the paged caches; called once, before the first forward. */
  allocateKvCache(numBlocks: number, blockSize: number): void;
  /** Returns logits [logitsIndices.length, vocabSize] on the model's device. */
  forward(batch: ForwardBatch): Tensor;
  /** OPTIONAL: called once a step's logits have been read; throws when that step's results cannot be
   * trusted. A tensor-parallel model on GPUs needs it: its collectives run after forward returned,
   * so a rank that dies mid-step is noticed only once the device has finished (or been aborted). */
  checkStep?(): void;
  /** OPTIONAL: true when forward honours ForwardBatch.prevTokenIds, so the engine may launch a decode
   * step before the previous one's tokens are read back (EngineOptions.asyncScheduling). */
  readonly readsDeviceTokenIds?: boolean;
}
