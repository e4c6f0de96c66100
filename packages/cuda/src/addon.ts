// Loads the native addon once. Loading never throws: a machine without nvcc at build time, without a
// driver or without a GPU gets `{ available: false, reason }`, and every caller can say why.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CudaDeviceInfo {
  readonly name: string;
  /** Compute capability, e.g. 9.0 for Hopper. */
  readonly major: number;
  readonly minor: number;
  readonly multiProcessorCount: number;
  /** Bytes of device memory. */
  readonly totalMemory: number;
}

export type CudaAvailability =
  | { readonly available: true; readonly devices: readonly CudaDeviceInfo[] }
  | { readonly available: false; readonly reason: string };

// biome-ignore lint/suspicious/noExplicitAny: the addon's surface is typed where it is wrapped.
export type NativeAddon = Record<string, any>;

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ADDON_PATH = join(packageRoot, 'build', 'Release', 'flashserve_cuda.node');

let cached: { addon: NativeAddon | undefined; availability: CudaAvailability } | undefined;

function load(): { addon: NativeAddon | undefined; availability: CudaAvailability } {
  const path = process.env.FLASHSERVE_CUDA_ADDON ?? ADDON_PATH;
  if (!existsSync(path)) {
    return {
      addon: undefined,
      availability: {
        available: false,
        reason: `native addon not built (${path} is missing: nvcc or cmake was not found when the package was built)`,
      },
    };
  }
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (err) {
    return {
      addon: undefined,
      availability: { available: false, reason: `native addon failed to load: ${(err as Error).message}` },
    };
  }
  const probe = addon.probe() as { ok: boolean; reason?: string; devices?: CudaDeviceInfo[] };
  if (!probe.ok)
    return { addon, availability: { available: false, reason: probe.reason ?? 'unknown reason' } };
  return { addon, availability: { available: true, devices: probe.devices ?? [] } };
}

/** Whether CUDA can be used here, and if not, why. Cheap after the first call. */
export function cudaAvailability(): CudaAvailability {
  cached ??= load();
  return cached.availability;
}

/** The loaded addon; throws with the unavailability reason when there is none. */
export function requireAddon(): NativeAddon {
  cached ??= load();
  if (!cached.addon || !cached.availability.available) {
    const reason = cached.availability.available ? 'addon missing' : cached.availability.reason;
    throw new Error(`@flashserve/cuda is unavailable: ${reason}`);
  }
  return cached.addon;
}
