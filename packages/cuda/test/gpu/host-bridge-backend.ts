// Test-only attention backend: runs core's reference-mla on the host for a CUDA device, moving the
// step's q / c_kv / k_pe to the host and the result back. Lets the whole model run on CudaDevice
// ops (and be checked against the transformers fixtures) independently of the GPU MLA kernels.
import {
  type AttentionBackend,
  type AttentionMetadataBuilder,
  type BackendSelectionContext,
  type CommonAttentionMetadata,
  CpuDevice,
  CpuTensor,
  type Device,
  type KvCache,
  type KvCacheLayout,
  type MlaAttentionImpl,
  type MlaModelSpec,
  referenceMlaBackend,
  type Tensor,
} from '@flashserve/core';

export class HostBridgeMlaBackend implements AttentionBackend<CommonAttentionMetadata> {
  readonly name = 'host-bridge-mla';
  readonly deviceKinds = ['cuda'] as const;
  readonly priority = -1;
  readonly #ref = referenceMlaBackend();
  readonly #cpu = new CpuDevice();

  unsupportedReasons(_ctx: BackendSelectionContext): string[] {
    return [];
  }

  cacheLayout(ctx: BackendSelectionContext): KvCacheLayout {
    return this.#ref.cacheLayout({ ...ctx, device: this.#cpu });
  }

  allocateCache(_device: Device, layout: KvCacheLayout, numBlocks: number): KvCache {
    return this.#ref.allocateCache(this.#cpu, layout, numBlocks);
  }

  metadataBuilder(
    _d: Device,
    model: MlaModelSpec,
    layout: KvCacheLayout,
  ): AttentionMetadataBuilder<CommonAttentionMetadata> {
    return this.#ref.metadataBuilder(this.#cpu, model, layout);
  }

  impl(device: Device, model: MlaModelSpec): MlaAttentionImpl<CommonAttentionMetadata> {
    const inner = this.#ref.impl(this.#cpu, model);
    const weightsOnHost = new WeakMap<Tensor, CpuTensor>();
    const toCpu = (t: Tensor): CpuTensor => new CpuTensor(t.shape, 'f32', device.toHost(t) as Float32Array);
    const persistent = (t: Tensor): CpuTensor => {
      let c = weightsOnHost.get(t);
      if (c === undefined) {
        c = toCpu(t);
        weightsOnHost.set(t, c);
      }
      return c;
    };
    return {
      forward: (inputs, cache, weights, metadata) => {
        const out = inner.forward(
          { q: toCpu(inputs.q), cKv: toCpu(inputs.cKv), kPe: toCpu(inputs.kPe) },
          cache,
          { wUk: persistent(weights.wUk), wUv: persistent(weights.wUv), softmaxScale: weights.softmaxScale },
          metadata,
        );
        return device.upload(this.#cpu.toHost(out) as Float32Array, out.shape, 'f32');
      },
    };
  }
}
