// flashmla: our Hopper (sm_90a) MLA decode kernel (csrc/sm90): TMA loads into a shared-memory ring,
// wgmma for Q K^T and P V, a split-KV schedule computed on the GPU, fp32 partials merged by a combine
// kernel. Highest priority under "auto" wherever it runs.
import type {
  AttentionBackend,
  BackendSelectionContext,
  Device,
  KvCache,
  KvCacheLayout,
  MlaModelSpec,
} from '@flashserve/core';
import {
  allocateGpuMlaCache,
  GpuMlaImpl,
  type GpuMlaMetadata,
  GpuMlaMetadataBuilder,
  gpuMlaCacheLayout,
  gpuMlaReasons,
} from './internal/gpu-mla.js';

/** Per-step metadata: device copies of the batch plus the tile schedule every layer reuses. */
export type FlashMlaMetadata = GpuMlaMetadata;

export class FlashMlaMetadataBuilder extends GpuMlaMetadataBuilder {
  constructor(device: Device, model: MlaModelSpec) {
    super('flashmla', device, model);
  }
}

export class FlashMlaImpl extends GpuMlaImpl {
  constructor(device: Device, model: MlaModelSpec) {
    super('flashmla', device, model);
  }
}

export class FlashMlaBackend implements AttentionBackend<FlashMlaMetadata> {
  readonly name = 'flashmla';
  readonly deviceKinds = ['cuda'] as const;
  /** Highest: the fastest backend wherever it can run. */
  readonly priority = 100;

  unsupportedReasons(ctx: BackendSelectionContext): string[] {
    // NOTE: sm_90a code runs on Hopper only (not on later majors), hence the upper bound.
    return gpuMlaReasons(this.name, ctx, 90, 90);
  }

  cacheLayout(ctx: BackendSelectionContext): KvCacheLayout {
    return gpuMlaCacheLayout(ctx);
  }

  allocateCache(device: Device, layout: KvCacheLayout, numBlocks: number): KvCache {
    return allocateGpuMlaCache(device, layout, numBlocks);
  }

  metadataBuilder(device: Device, model: MlaModelSpec, _layout: KvCacheLayout): FlashMlaMetadataBuilder {
    return new FlashMlaMetadataBuilder(device, model);
  }

  impl(device: Device, model: MlaModelSpec): FlashMlaImpl {
    return new FlashMlaImpl(device, model);
  }
}
