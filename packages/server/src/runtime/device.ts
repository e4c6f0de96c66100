// The device the model runs on, and how big its KV cache may be.
//
// CPU: --kv-cache-memory, or a fixed default. CUDA: only where the addon can run (otherwise the
// startup fails with the addon's own reason); the KV budget is --kv-cache-memory, or what
// --gpu-memory-utilization of the card leaves after the weights and a headroom for activations.
// Sampling: on CUDA the GPU sampler (token ids and logprobs come back, not the logits), unless
// FLASHSERVE_SAMPLER=host asks for core's host sampler; on the CPU the engine's default (host).

import { CpuDevice, type Device, type Sampler, type WeightSource } from '@flashserve/core';
import { CudaDevice, CudaSampler, cudaAvailability, GpuDummyWeightSource } from '@flashserve/cuda';
import type { ServeConfig } from '../config.js';
import { configDeviceUnavailable } from '../errors.js';

/** KV cache budget on the CPU when --kv-cache-memory is not given. */
export const DEFAULT_CPU_KV_CACHE_BYTES = 128 * 1024 ** 2;
/** GPU memory kept free for activations, workspaces and CUDA graphs when sizing the KV cache. */
export const GPU_ACTIVATION_HEADROOM_BYTES = 2 * 1024 ** 3;

export interface SelectedDevice {
  readonly device: Device;
  /** Dummy weights made where they are cheapest (on the GPU for CUDA), or undefined to use the
   * models package's host-side generator. */
  dummyWeights(manifest: ReadonlyMap<string, readonly number[]>): WeightSource | undefined;
  /** The KV cache budget in bytes, called once the weights are loaded. */
  kvCacheBytes(): number;
  /** The engine's sampler for this device (undefined: the engine's default, the host sampler). */
  readonly sampler: Sampler | undefined;
}

export function selectDevice(config: ServeConfig, env: NodeJS.ProcessEnv = process.env): SelectedDevice {
  if (config.device === 'cpu') {
    return {
      device: new CpuDevice(),
      dummyWeights: () => undefined,
      kvCacheBytes: () => config.kvCacheMemory ?? DEFAULT_CPU_KV_CACHE_BYTES,
      sampler: undefined,
    };
  }
  const cuda = cudaAvailability();
  if (!cuda.available) throw configDeviceUnavailable('cuda', cuda.reason);
  const device = new CudaDevice(config.loadFormat === 'dummy' ? { dummyEmptyUploadsSeed: config.seed } : {});
  return {
    device,
    sampler: env.FLASHSERVE_SAMPLER === 'host' ? undefined : new CudaSampler(),
    dummyWeights: (manifest) => new GpuDummyWeightSource(manifest),
    kvCacheBytes() {
      if (config.kvCacheMemory !== undefined) return config.kvCacheMemory;
      const used = device.memStats().inUse;
      const budget = Math.floor(
        device.totalMemory * config.gpuMemoryUtilization - used - GPU_ACTIVATION_HEADROOM_BYTES,
      );
      if (budget <= 0) {
        throw configDeviceUnavailable(
          'cuda',
          `--gpu-memory-utilization ${config.gpuMemoryUtilization} leaves no room for a KV cache ` +
            `(weights use ${used} bytes of ${device.totalMemory}); raise it or set --kv-cache-memory`,
        );
      }
      return budget;
    },
  };
}
