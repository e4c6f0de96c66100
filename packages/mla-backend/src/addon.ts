// The @flashserve/mla-backend addon, loaded once through @flashserve/cuda's NativeAddonLoader (never
// throws; says why not).

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AddonAvailability, NativeAddonLoader } from '@flashserve/cuda';

export interface MlaDeviceInfo {
  readonly name: string;
  /** Compute capability, e.g. 9.0 for Hopper. */
  readonly major: number;
  readonly minor: number;
  readonly multiProcessorCount: number;
}

export type MlaAvailability = AddonAvailability<MlaDeviceInfo>;

/** Device addresses and stream handles cross as bigint; sizes and strides (in elements) as numbers. */
export interface MlaMetadataArgs {
  /** int32 [b] */
  readonly cacheSeqlens: bigint;
  readonly b: number;
  /** sQ * hQ / hKv: query rows sharing the one latent KV head. */
  readonly qRows: number;
  readonly numParts: number;
  /** int32 [numParts, 8] */
  readonly schedMeta: bigint;
  /** int32 [b + 1] */
  readonly numSplits: bigint;
  readonly stream: bigint;
}

export interface MlaDecodeArgs {
  readonly b: number;
  readonly sQ: number;
  readonly hQ: number;
  /** bf16 [b, sQ, hQ, 576], rows (s, h) packed */
  readonly q: bigint;
  readonly qBatchStride: number;
  readonly qRowStride: number;
  /** bf16 [numBlocks, 64, 1, 576] */
  readonly kcache: bigint;
  readonly numBlocks: number;
  readonly kBlockStride: number;
  readonly kRowStride: number;
  /** int32 [b, maxBlocksPerSeq] */
  readonly blockTable: bigint;
  readonly blockTableStride: number;
  readonly maxBlocksPerSeq: number;
  /** int32 [b] */
  readonly cacheSeqlens: bigint;
  /** bf16 [b, sQ, hQ, 512] */
  readonly out: bigint;
  readonly oBatchStride: number;
  readonly oRowStride: number;
  /** f32 [b, hQ, sQ] */
  readonly lse: bigint;
  /** f32 [b + numParts, sQ * hQ, 512] */
  readonly oAccum: bigint;
  /** f32 [b + numParts, sQ * hQ] */
  readonly lseAccum: bigint;
  readonly schedMeta: bigint;
  readonly numSplits: bigint;
  readonly numParts: number;
  readonly softmaxScale: number;
  readonly stream: bigint;
}

/** mlaDecode's arguments plus W_UV and the projected result (the combine fused into W_UV). */
export interface MlaDecodeUvArgs extends MlaDecodeArgs {
  /** bf16 [hQ, vDim, 512], contiguous */
  readonly wUv: bigint;
  /** vHeadDim: a multiple of 32 */
  readonly vDim: number;
  /** bf16 [b * sQ, hQ, vDim], contiguous */
  readonly result: bigint;
}

export interface KvWriteArgs {
  /** bf16 [numTokens, 512] */
  readonly cKv: bigint;
  readonly cKvStride: number;
  /** bf16 [numTokens, 64] */
  readonly kPe: bigint;
  readonly kPeStride: number;
  /** int32 [numTokens]; a negative slot skips the row */
  readonly slotMapping: bigint;
  readonly numTokens: number;
  readonly kcache: bigint;
  readonly numBlocks: number;
  readonly kBlockStride: number;
  readonly kRowStride: number;
  readonly stream: bigint;
}

/** The addon's surface (csrc/binding/mla_ops.cc). Every op throws a JS error naming itself. */
export interface NativeMla {
  probe(): { ok: boolean; reason?: string; devices?: MlaDeviceInfo[] };
  numSmParts(args: { numSms: number; qRows: number }): number;
  getMlaMetadata(args: MlaMetadataArgs): void;
  mlaDecode(args: MlaDecodeArgs): void;
  /** sm_90 only; b * sQ <= MLA_UV_MAX_TOKENS. out is still written for requests in one piece. */
  mlaDecodeUv(args: MlaDecodeUvArgs): void;
  mlaDecodePortable(args: MlaDecodeArgs): void;
  kvWrite(args: KvWriteArgs): void;
  /**
   * Measurement only: this addon's kernels stamp into @flashserve/cuda's kernel timeline (the log
   * CudaDevice.startTimeline returns), tagged; `{}` detaches.
   */
  timelineAttach(args: { stamps?: bigint; count?: bigint; capacity?: number }): void;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ADDON_PATH = join(packageRoot, 'build', 'Release', 'flashserve_mla.node');

const loader = new NativeAddonLoader<NativeMla, MlaDeviceInfo>(
  '@flashserve/mla-backend',
  process.env.FLASHSERVE_MLA_ADDON ?? ADDON_PATH,
);

/** Whether the MLA kernels can run here, and if not, why. Cheap after the first call. */
export function mlaAvailability(): MlaAvailability {
  return loader.availability();
}

/** The loaded addon; throws with the unavailability reason when there is none. */
export function requireMlaAddon(): NativeMla {
  return loader.require();
}
