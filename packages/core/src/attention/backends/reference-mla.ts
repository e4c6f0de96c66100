// reference-mla: MLA attention on the CPU in float32, straight from the definition. It is the oracle
// every other backend is checked against, so it favours being obviously right over being fast.
//
// Cache: one latent row per token, [numBlocks, blockSize, 1, kvLoraRank + qkRopeHeadDim], row
// `slot = blockId * blockSize + offset` holding [c_kv ; k_pe]. Any block size works.
//
// Attention runs in the absorbed form for prefill and decode alike (DESIGN.md, "MLA in one page"),
// per request as three dense products over the request's gathered rows:
//   q_latent[t, h] = q_nope[t, h] @ W_UK[h]              [T, h, kvLoraRank]
//   score(t, j)    = (q_latent . c_kv[j] + q_pe . k_pe[j]) * softmaxScale
//   o_latent[t, h] = softmax_j(score) @ c_kv              [T, h, kvLoraRank]
//   out[t, h]      = W_UV[h] @ o_latent[t, h]             [T, h, vHeadDim]
// Query token t of request r (its i-th new token) sees cached tokens [0, numComputedTokens[r] + i]:
// causal within the step, everything before it.

import { CpuTensor, cpuF32 } from '../../device/cpu-device.js';
import { matmulNt } from '../../device/cpu-kernels.js';
import type { Device, Tensor } from '../../device/device.js';
import type {
  AttentionBackend,
  AttentionMetadataBuilder,
  BackendSelectionContext,
  KvCache,
  KvCacheLayout,
  MlaAttentionImpl,
  MlaForwardInputs,
  MlaLayerWeights,
  MlaModelSpec,
} from '../backend.js';
import type { CommonAttentionMetadata } from '../common-metadata.js';
import { type AttentionBackendRegistry, attentionBackends } from '../registry.js';

/** The reference backend needs nothing beyond the common metadata. */
export type ReferenceMlaMetadata = CommonAttentionMetadata;

/** Block size used when the caller does not ask for one. */
const DEFAULT_BLOCK_SIZE = 16;

export class ReferenceMlaMetadataBuilder implements AttentionMetadataBuilder<ReferenceMlaMetadata> {
  build(common: CommonAttentionMetadata): ReferenceMlaMetadata {
    if (common.queryStartLoc.length !== common.numReqs + 1) {
      throw new Error(
        `reference-mla: queryStartLoc has ${common.queryStartLoc.length} entries for ${common.numReqs} requests`,
      );
    }
    if (common.slotMapping.length !== common.numTokens) {
      throw new Error(
        `reference-mla: slotMapping has ${common.slotMapping.length} entries for ${common.numTokens} tokens`,
      );
    }
    return common;
  }
}

/** W_UK [H, N, L] transposed to [H, L, N], computed once per weight tensor. */
const ukTransposes = new WeakMap<Tensor, Float32Array>();
function transposedUk(t: Tensor, wUk: Float32Array, H: number, N: number, L: number): Float32Array {
  let out = ukTransposes.get(t);
  if (out === undefined) {
    out = new Float32Array(H * L * N);
    for (let h = 0; h < H; h++)
      for (let n = 0; n < N; n++)
        for (let l = 0; l < L; l++) out[(h * L + l) * N + n] = wUk[(h * N + n) * L + l]!;
    ukTransposes.set(t, out);
  }
  return out;
}

export class ReferenceMlaImpl implements MlaAttentionImpl<ReferenceMlaMetadata> {
  readonly #model: MlaModelSpec;

  constructor(model: MlaModelSpec) {
    this.#model = model;
  }

  forward(
    inputs: MlaForwardInputs,
    cache: KvCache,
    weights: MlaLayerWeights,
    md: ReferenceMlaMetadata,
  ): Tensor {
    const { numHeads: H, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V } = this.#model;
    const W = L + R;
    const q = cpuF32(inputs.q, 'reference-mla q');
    const cKv = cpuF32(inputs.cKv, 'reference-mla cKv');
    const kPe = cpuF32(inputs.kPe, 'reference-mla kPe');
    const kv = cpuF32(cache.tensor, 'reference-mla cache');
    const wUk = cpuF32(weights.wUk, 'reference-mla wUk');
    const wUv = cpuF32(weights.wUv, 'reference-mla wUv');
    const T = md.numTokens;
    const bs = cache.layout.blockSize;
    if (cache.layout.entryWidth !== W)
      throw new Error(`reference-mla: cache rows of ${cache.layout.entryWidth}, model needs ${W}`);
    if (q.length !== T * H * (N + R))
      throw new Error(`reference-mla: q ${inputs.q.shape.join('x')} for ${T} tokens`);

    // 1. Write the step's latent rows into their slots.
    const numSlots = cache.numBlocks * bs;
    for (let t = 0; t < T; t++) {
      const slot = md.slotMapping[t]!;
      if (slot < 0 || slot >= numSlots)
        throw new Error(`reference-mla: slot ${slot} out of range [0, ${numSlots})`);
      kv.set(cKv.subarray(t * L, (t + 1) * L), slot * W);
      kv.set(kPe.subarray(t * R, (t + 1) * R), slot * W + L);
    }

    const out = new Float32Array(T * H * V);
    const wUkT = transposedUk(weights.wUk, wUk, H, N, L);
    const scale = weights.softmaxScale;
    for (let r = 0; r < md.numReqs; r++) {
      const qStart = md.queryStartLoc[r]!;
      const qEnd = md.queryStartLoc[r + 1]!;
      const nq = qEnd - qStart;
      const computed = md.numComputedTokens[r]!;
      const seqLen = md.seqLens[r]!;
      if (computed + nq !== seqLen) {
        throw new Error(`reference-mla: request ${r}: ${computed} computed + ${nq} new != seqLen ${seqLen}`);
      }
      if (nq === 0) continue;
      const S = seqLen;
      // The request's cached rows, gathered through its block table: K [S, W], and the latent part
      // transposed, CkvT [L, S], so both products below are contiguous row-by-row dot products.
      const K = new Float32Array(S * W);
      for (let j = 0; j < S; j++) {
        const block = md.blockTables[r * md.maxBlocksPerReq + Math.floor(j / bs)]!;
        const slot = block * bs + (j % bs);
        K.set(kv.subarray(slot * W, (slot + 1) * W), j * W);
      }
      const ckvT = new Float32Array(L * S);
      for (let j = 0; j < S; j++) for (let l = 0; l < L; l++) ckvT[l * S + j] = K[j * W + l]!;

      // Absorbed queries [nq * H, W]: [q_nope @ W_UK[h] ; q_pe].
      const rows = nq * H;
      const qAbs = new Float32Array(rows * W);
      for (let i = 0; i < nq; i++) {
        for (let h = 0; h < H; h++) {
          const qb = ((qStart + i) * H + h) * (N + R);
          const row = (i * H + h) * W;
          matmulNt(q, qb, 1, N, wUkT, h * L * N, L, qAbs, row);
          qAbs.set(q.subarray(qb + N, qb + N + R), row + L);
        }
      }
      // Scores [nq * H, S], causal softmax in place: query i sees keys [0, computed + i].
      const p = new Float32Array(rows * S);
      matmulNt(qAbs, 0, rows, W, K, 0, S, p, 0);
      for (let i = 0; i < nq; i++) {
        const visible = computed + i + 1;
        for (let h = 0; h < H; h++) {
          const b = (i * H + h) * S;
          let max = Number.NEGATIVE_INFINITY;
          for (let j = 0; j < visible; j++) max = Math.max(max, p[b + j]! * scale);
          let sum = 0;
          for (let j = 0; j < visible; j++) {
            const e = Math.exp(p[b + j]! * scale - max);
            p[b + j] = e;
            sum += e;
          }
          for (let j = 0; j < visible; j++) p[b + j] = p[b + j]! / sum;
          p.fill(0, b + visible, b + S);
        }
      }
      // o_latent [nq * H, L] = P @ C_kv, then out[t, h] = W_UV[h] @ o_latent.
      const oLat = new Float32Array(rows * L);
      matmulNt(p, 0, rows, S, ckvT, 0, L, oLat, 0);
      for (let i = 0; i < nq; i++) {
        for (let h = 0; h < H; h++) {
          matmulNt(oLat, (i * H + h) * L, 1, L, wUv, h * V * L, V, out, ((qStart + i) * H + h) * V);
        }
      }
    }
    return new CpuTensor([T, H, V], 'f32', out);
  }
}

export class ReferenceMlaBackend implements AttentionBackend<ReferenceMlaMetadata> {
  readonly name = 'reference-mla';
  readonly deviceKinds = ['cpu'] as const;
  /** Lowest: a GPU backend that supports the configuration always wins under "auto". */
  readonly priority = 0;

  unsupportedReasons(ctx: BackendSelectionContext): string[] {
    const reasons: string[] = [];
    if (ctx.device.info.kind !== 'cpu')
      reasons.push(`runs on the CPU device only (device is ${ctx.device.info.name})`);
    if (ctx.blockSize !== undefined && (!Number.isInteger(ctx.blockSize) || ctx.blockSize < 1)) {
      reasons.push(`block size must be a positive integer (got ${ctx.blockSize})`);
    }
    return reasons;
  }

  cacheLayout(ctx: BackendSelectionContext): KvCacheLayout {
    const blockSize = ctx.blockSize ?? DEFAULT_BLOCK_SIZE;
    const entryWidth = ctx.model.kvLoraRank + ctx.model.qkRopeHeadDim;
    return {
      blockSize,
      entryWidth,
      dtype: 'f32',
      bytesPerBlock: blockSize * entryWidth * 4 * ctx.model.numLayers,
    };
  }

  allocateCache(device: Device, layout: KvCacheLayout, numBlocks: number): KvCache {
    return {
      layout,
      numBlocks,
      tensor: device.zeros([numBlocks, layout.blockSize, 1, layout.entryWidth], 'f32'),
    };
  }

  metadataBuilder(
    _device: Device,
    _model: MlaModelSpec,
    _layout: KvCacheLayout,
  ): ReferenceMlaMetadataBuilder {
    return new ReferenceMlaMetadataBuilder();
  }

  impl(_device: Device, model: MlaModelSpec): ReferenceMlaImpl {
    return new ReferenceMlaImpl(model);
  }
}

/** A new reference backend (it holds no state; one per process is plenty). */
export function referenceMlaBackend(): ReferenceMlaBackend {
  return new ReferenceMlaBackend();
}

/** Adds "reference-mla" to a registry (normally the process-wide `attentionBackends`). */
export function registerReferenceMlaBackend(registry: AttentionBackendRegistry): void {
  registry.register('reference-mla', referenceMlaBackend);
}

// NOTE: the CPU oracle lives in core, so it registers itself into the process-wide registry when core
// is imported; GPU backends do the same from their own packages.
registerReferenceMlaBackend(attentionBackends);
