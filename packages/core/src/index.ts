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
export {
  ReferenceMlaBackend,
  ReferenceMlaImpl,
  type ReferenceMlaMetadata,
  ReferenceMlaMetadataBuilder,
  referenceMlaBackend,
  registerReferenceMlaBackend,
} from './attention/backends/reference-mla.js';
export type { CommonAttentionMetadata } from './attention/common-metadata.js';
export {
  type AttentionBackendFactory,
  AttentionBackendRegistry,
  attentionBackends,
} from './attention/registry.js';
export { addRmsNormLinearByParts, moeRouteExpertsByParts } from './device/by-parts.js';
export { CpuDevice, CpuTensor } from './device/cpu-device.js';
export { bf16ToF32, f16ToF32, f32ToBf16 } from './device/cpu-kernels.js';
export type {
  Device,
  DeviceInfo,
  DeviceKind,
  DType,
  GatedMlpWeights,
  HostData,
  MlaInputs,
  MoeExpertWeights,
  MoeRouteParams,
  MoeRouting,
  NormLinearResult,
  RopeStyle,
  RopeTable,
  Tensor,
} from './device/device.js';
export { CpuProcessGroup } from './distributed/cpu-process-group.js';
export type { ProcessGroup, ProcessGroupBackend } from './distributed/process-group.js';
export {
  RANK_THREAD_ENV,
  type RankContext,
  type RankHandlers,
  RankThreads,
  type RankThreadsOptions,
  runRankThreadEntry,
  type SupervisorHooks,
  serveSteps,
} from './distributed/rank-threads.js';
export {
  type AbortKind,
  createShmGroupInit,
  SharedMemoryGroup,
  ShmAbortFlag,
  type ShmGroupInit,
  type ShmGroupOptions,
} from './distributed/shm-group.js';
export {
  createStepChannelInit,
  type StepChannelInit,
  type StepCommand,
  StepReceiver,
  StepSender,
} from './distributed/step-channel.js';
export {
  ByteStreamDetokenizer,
  createDetokenizer,
  type Detokenizer,
  WindowDetokenizer,
} from './engine/detokenizer.js';
export { Engine } from './engine/engine.js';
export type { DeviceTokenIds, ForwardBatch, Model, ModelInfo } from './engine/model.js';
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
export type { ChatMessage, Tokenizer } from './engine/tokenizer.js';
export {
  backendUnknown,
  backendUnsupported,
  chatTemplateMissing,
  defineError,
  defineParamError,
  distributedConfigInvalid,
  distributedGroupBroken,
  distributedTimeout,
  distributedUnavailable,
  distributedWorkerFailed,
  ERROR_CODES,
  type ErrorSpec,
  engineConfigInvalid,
  engineModelFailed,
  engineOverloaded,
  engineShutDown,
  engineStepFailed,
  FlashserveError,
  loadConfigUnsupported,
  loadFileMalformed,
  loadFileMissing,
  loadTensorMismatch,
  loadTensorMissing,
  type OpenAiErrorType,
  requestDuplicateId,
  requestExceedsKvCache,
  requestParamInvalid,
  requestPromptEmpty,
  requestTooLong,
} from './errors.js';
export { BlockPool, NULL_BLOCK } from './kv-cache/block-pool.js';
export {
  type CachedPrefix,
  type KvCacheCounters,
  KvCacheManager,
  type KvCacheManagerOptions,
} from './kv-cache/kv-cache-manager.js';
export { type BlockHash, extendBlockHashes, hashBlock } from './kv-cache/prefix-hash.js';
export { SeqBlocks } from './kv-cache/seq-blocks.js';
export { type GenerationDefaults, loadGenerationConfig } from './loader/generation-config.js';
export { HfTokenizer, type HfTokenizerOptions, loadHfTokenizer } from './loader/hf-tokenizer.js';
export { readJsonObject } from './loader/json-file.js';
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
export { HostSampler, MAX_LOGPROBS } from './sampling/host-sampler.js';
export { Rng } from './sampling/rng.js';
export type { PendingSample, SampledToken, Sampler, SamplingRow } from './sampling/sampler.js';
export type { SchedulerApi, SchedulerConfig } from './scheduler/interface.js';
export type { SchedulerOutput } from './scheduler/output.js';
export { Scheduler } from './scheduler/scheduler.js';
export { Sequence, type SequenceStatus } from './scheduler/sequence.js';
