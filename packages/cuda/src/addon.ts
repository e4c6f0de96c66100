// The @flashserve/cuda addon, loaded once through NativeAddonLoader (never throws; says why not).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AddonAvailability, NativeAddonLoader } from './native-addon.js';

export interface CudaDeviceInfo {
  readonly name: string;
  /** Compute capability, e.g. 9.0 for Hopper. */
  readonly major: number;
  readonly minor: number;
  readonly multiProcessorCount: number;
  /** Bytes of device memory. */
  readonly totalMemory: number;
}

export type CudaAvailability = AddonAvailability<CudaDeviceInfo>;

// biome-ignore lint/suspicious/noExplicitAny: the addon's surface is typed where it is wrapped.
export type NativeAddon = Record<string, any>;

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ADDON_PATH = join(packageRoot, 'build', 'Release', 'flashserve_cuda.node');

const loader = new NativeAddonLoader<NativeAddon, CudaDeviceInfo>(
  '@flashserve/cuda',
  process.env.FLASHSERVE_CUDA_ADDON ?? ADDON_PATH,
);

/** Whether CUDA can be used here, and if not, why. Cheap after the first call. */
export function cudaAvailability(): CudaAvailability {
  return loader.availability();
}

/** The loaded addon; throws with the unavailability reason when there is none. */
export function requireAddon(): NativeAddon {
  return loader.require();
}
