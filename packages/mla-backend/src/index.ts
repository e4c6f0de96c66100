// @flashserve/mla-backend: the `flashmla` (Hopper) and `cuda-mla` (sm_80+) attention backends.
// Importing this package registers both into core's process-wide registry; on a machine where they
// cannot run they stay registered and say why through unsupportedReasons().
import { type AttentionBackendRegistry, attentionBackends } from '@flashserve/core';
import { CudaMlaBackend } from './cuda-mla.js';
import { FlashMlaBackend } from './flashmla.js';

export {
  ADDON_PATH,
  type KvWriteArgs,
  type MlaAvailability,
  type MlaDecodeArgs,
  type MlaDeviceInfo,
  type MlaMetadataArgs,
  mlaAvailability,
  type NativeMla,
  requireMlaAddon,
} from './addon.js';
export { CudaMlaBackend, CudaMlaImpl, type CudaMlaMetadata, CudaMlaMetadataBuilder } from './cuda-mla.js';
export { FlashMlaBackend, FlashMlaImpl, type FlashMlaMetadata, FlashMlaMetadataBuilder } from './flashmla.js';

/** Adds "flashmla" and "cuda-mla" to a registry (normally the process-wide `attentionBackends`). */
export function registerMlaBackends(registry: AttentionBackendRegistry): void {
  registry.register('flashmla', () => new FlashMlaBackend());
  registry.register('cuda-mla', () => new CudaMlaBackend());
}

registerMlaBackends(attentionBackends);
