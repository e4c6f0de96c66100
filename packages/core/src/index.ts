export type {
  AttentionBackend,
  AttentionMetadataBuilder,
  BackendSelectionContext,
  KvCache,
  KvCacheLayout,
  MlaAttentionImpl,
  MlaForwardInputs,
  MlaLayerWeights,
  MlaModelSpec,
} from './attention/backend.js';
export type { CommonAttentionMetadata } from './attention/common-metadata.js';
export type {
  Device,
  DeviceInfo,
  DeviceKind,
  DType,
  HostData,
  MoeExpertWeights,
  MoeRouteParams,
  MoeRouting,
  RopeStyle,
  RopeTable,
  Tensor,
} from './device/device.js';
export type { ForwardBatch, Model, ModelInfo } from './engine/model.js';
export type { ChatMessage, Tokenizer } from './engine/tokenizer.js';
export {
  backendUnknown,
  backendUnsupported,
  defineError,
  ERROR_CODES,
  type ErrorSpec,
  FlashserveError,
  type OpenAiErrorType,
} from './errors.js';
export { Engine } from './engine/engine.js';
export {
  type AddRequestInput,
  type CompletionOutput,
  defaultSamplingParams,
  type EngineEvents,
  type EngineOptions,
  type EngineStats,
  type FinishReason,
  type RequestHandle,
  type RequestMetrics,
  type RequestOutput,
  type SamplingParams,
  type StepStats,
  type TokenLogprob,
} from './engine/protocol.js';
export {
  defineParamError,
  engineConfigInvalid,
  engineModelFailed,
  engineOverloaded,
  engineShutDown,
  engineStepFailed,
  requestDuplicateId,
  requestExceedsKvCache,
  requestParamInvalid,
  requestPromptEmpty,
  requestTooLong,
} from './errors.js';
export { CpuDevice, CpuTensor } from './device/cpu-device.js';
export { bf16ToF32, f16ToF32, f32ToBf16 } from './device/cpu-kernels.js';
export {
  ReferenceMlaBackend,
  ReferenceMlaImpl,
  type ReferenceMlaMetadata,
  ReferenceMlaMetadataBuilder,
  referenceMlaBackend,
  registerReferenceMlaBackend,
} from './attention/backends/reference-mla.js';
export {
  type DeepseekConfig,
  type DeepseekModelType,
  loadDeepseekConfig,
  type MoeConfig,
  parseDeepseekConfig,
  type RopeConfig,
  type YarnConfig,
} from './loader/model-config.js';
export {
  type HostTensor,
  SafetensorsCheckpoint,
  SafetensorsFile,
  type WeightSource,
} from './loader/safetensors.js';
export { HfTokenizer, type HfTokenizerOptions, loadHfTokenizer } from './loader/hf-tokenizer.js';
export { type GenerationDefaults, loadGenerationConfig } from './loader/generation-config.js';
export { readJsonObject } from './loader/json-file.js';
export {
  chatTemplateMissing,
  loadConfigUnsupported,
  loadFileMalformed,
  loadFileMissing,
  loadTensorMismatch,
  loadTensorMissing,
} from './errors.js';
export {
  type AttentionBackendFactory,
  AttentionBackendRegistry,
  attentionBackends,
} from './attention/registry.js';
export { BlockPool, NULL_BLOCK } from './kv-cache/block-pool.js';
export {
  type CachedPrefix,
  type KvCacheCounters,
  KvCacheManager,
  type KvCacheManagerOptions,
} from './kv-cache/kv-cache-manager.js';
export { type BlockHash, extendBlockHashes, hashBlock } from './kv-cache/prefix-hash.js';
export { SeqBlocks } from './kv-cache/seq-blocks.js';
export type { SchedulerApi, SchedulerConfig } from './scheduler/interface.js';
export type { SchedulerOutput } from './scheduler/output.js';
export { Scheduler } from './scheduler/scheduler.js';
export { Sequence, type SequenceStatus } from './scheduler/sequence.js';
export { HostSampler, MAX_LOGPROBS } from './sampling/host-sampler.js';
export { Rng } from './sampling/rng.js';
export type { SampledToken, Sampler, SamplingRow } from './sampling/sampler.js';
export { IncrementalDetokenizer } from './engine/detokenizer.js';
