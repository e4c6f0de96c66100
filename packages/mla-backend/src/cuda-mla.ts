// cuda-mla: the portable CUDA MLA decode kernel (csrc/portable), any NVIDIA GPU from sm_80. Same
// schedule, arguments and cache layout as flashmla; CUDA-core fp32 math. The baseline, and the GPU
// path where flashmla cannot run.
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

export type CudaMlaMetadata = GpuMlaMetadata;

export class CudaMlaMetadataBuilder extends GpuMlaMetadataBuilder {
  constructor(device: Device, model: MlaModelSpec) {
    super('cuda-mla', device, model);
  }
}

export class CudaMlaImpl extends GpuMlaImpl {
  constructor(device: Device, model: MlaModelSpec) {
    super('cuda-mla', device, model);
  }
}

export class CudaMlaBackend implements AttentionBackend<CudaMlaMetadata> {
  readonly name = 'cuda-mla';
  readonly deviceKinds = ['cuda'] as const;
  /** Below flashmla, above the CPU reference. */
  readonly priority = 50;

  unsupportedReasons(ctx: BackendSelectionContext): string[] {
    return gpuMlaReasons(this.name, ctx, 80, Number.POSITIVE_INFINITY);
  }

  cacheLayout(ctx: BackendSelectionContext): KvCacheLayout {
    return gpuMlaCacheLayout(ctx);
  }

  allocateCache(device: Device, layout: KvCacheLayout, numBlocks: number): KvCache {
    return allocateGpuMlaCache(device, layout, numBlocks);
  }

  metadataBuilder(device: Device, model: MlaModelSpec, _layout: KvCacheLayout): CudaMlaMetadataBuilder {
    return new CudaMlaMetadataBuilder(device, model);
  }

  impl(device: Device, model: MlaModelSpec): CudaMlaImpl {
    return new CudaMlaImpl(device, model);
  }
}
