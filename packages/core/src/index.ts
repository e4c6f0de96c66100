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
