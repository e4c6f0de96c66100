// Loading a Node-API CUDA addon of this repository, once, without ever throwing: a machine without
// nvcc at build time, without a driver or without a GPU gets `{ available: false, reason }`, and
// every caller can say why. @flashserve/cuda and @flashserve/mla-backend load theirs through this.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

export type AddonAvailability<D> =
  | { readonly available: true; readonly devices: readonly D[] }
  | { readonly available: false; readonly reason: string };

/** What every addon's `probe()` answers; it makes no CUDA call that could fail the load itself. */
export interface AddonProbe<D> {
  probe(): { ok: boolean; reason?: string; devices?: D[] };
}

/** `A` is the addon's typed surface; it must have `probe()` (AddonProbe), which is checked at load. */
export class NativeAddonLoader<A, D> {
  readonly #packageName: string;
  readonly #path: string;
  #loaded: { addon: A | undefined; availability: AddonAvailability<D> } | undefined;

  /** `path` is where the build put the addon (an environment override is resolved by the caller). */
  constructor(packageName: string, path: string) {
    this.#packageName = packageName;
    this.#path = path;
  }

  /** Whether the addon can be used here, and if not, why. Cheap after the first call. */
  availability(): AddonAvailability<D> {
    this.#loaded ??= this.#load();
    return this.#loaded.availability;
  }

  /** The loaded addon; throws with the unavailability reason when there is none. */
  require(): A {
    this.#loaded ??= this.#load();
    const { addon, availability } = this.#loaded;
    if (addon === undefined || !availability.available) {
      const reason = availability.available ? 'addon missing' : availability.reason;
      throw new Error(`${this.#packageName} is unavailable: ${reason}`);
    }
    return addon;
  }

  #load(): { addon: A | undefined; availability: AddonAvailability<D> } {
    const path = this.#path;
    if (!existsSync(path)) {
      return {
        addon: undefined,
        availability: {
          available: false,
          reason: `native addon not built (${path} is missing: nvcc or cmake was not found when the package was built)`,
        },
      };
    }
    let addon: A;
    try {
      addon = createRequire(import.meta.url)(path) as A;
    } catch (err) {
      return {
        addon: undefined,
        availability: { available: false, reason: `native addon failed to load: ${(err as Error).message}` },
      };
    }
    const probeFn = (addon as Partial<AddonProbe<D>>).probe;
    if (typeof probeFn !== 'function') {
      return { addon: undefined, availability: { available: false, reason: 'native addon has no probe()' } };
    }
    const probe = probeFn.call(addon);
    if (!probe.ok) {
      return { addon, availability: { available: false, reason: probe.reason ?? 'unknown reason' } };
    }
    return { addon, availability: { available: true, devices: probe.devices ?? [] } };
  }
}
