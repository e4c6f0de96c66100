// Benchmark-only attention backend for when no GPU MLA backend is available: it writes each step's
// latent rows into the paged cache (the real cost every backend pays) and returns zeros for the
// attention output, so the rest of the forward pass can be timed. Timings made with it EXCLUDE
// attention and say so.
import type {
  AttentionBackend,
  AttentionMetadataBuilder,
  BackendSelectionContext,
  CommonAttentionMetadata,
  Device,
  KvCache,
  KvCacheLayout,
  MlaAttentionImpl,
  MlaModelSpec,
  Tensor,
} from '@flashserve/core';
import type { CudaDevice } from '../../src/index.js';

interface Meta {
  readonly slots: Tensor;
  readonly numTokens: number;
}

export class KvOnlyAttentionBackend implements AttentionBackend<Meta> {
  readonly name = 'kv-write-only (attention excluded)';
  readonly deviceKinds = ['cuda'] as const;
  readonly priority = -1;

  unsupportedReasons(_ctx: BackendSelectionContext): string[] {
    return [];
  }

  cacheLayout(ctx: BackendSelectionContext): KvCacheLayout {
    const entryWidth = ctx.model.kvLoraRank + ctx.model.qkRopeHeadDim;
    const blockSize = ctx.blockSize ?? 64;
    return {
      blockSize,
      entryWidth,
      dtype: 'bf16',
      bytesPerBlock: blockSize * entryWidth * 2 * ctx.model.numLayers,
    };
  }

  allocateCache(device: Device, layout: KvCacheLayout, numBlocks: number): KvCache {
    return {
      layout,
      numBlocks,
      tensor: device.zeros([numBlocks, layout.blockSize, 1, layout.entryWidth], 'bf16'),
    };
  }

  metadataBuilder(
    device: Device,
    _model: MlaModelSpec,
    _layout: KvCacheLayout,
  ): AttentionMetadataBuilder<Meta> {
    return {
      build: (common: CommonAttentionMetadata): Meta => ({
        slots: device.upload(common.slotMapping, [common.numTokens], 'i32'),
        numTokens: common.numTokens,
      }),
    };
  }

  impl(device: Device, model: MlaModelSpec): MlaAttentionImpl<Meta> {
    const d = device as CudaDevice;
    return {
      forward: (inputs, cache, _weights, meta) => {
        d.kvCacheWrite(cache.tensor, inputs.cKv, inputs.kPe, meta.slots);
        return d.zeros([meta.numTokens, model.numHeads, model.vHeadDim], 'bf16');
      },
    };
  }
}
