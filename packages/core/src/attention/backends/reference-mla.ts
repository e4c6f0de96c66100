// reference-mla: MLA attention on the CPU in float32, straight from the definition. It is the oracle
// every other backend is checked against, so it favours being obviously right over being fast.
//
// Cache: one latent row per token, [numBlocks, blockSize, 1, kvLoraRank + qkRopeHeadDim], row
// `slot = blockId * blockSize + offset` holding [c_kv ; k_pe]. Any block size works.
//
// Attention runs in the absorbed form for prefill and decode alike (DESIGN.md, "MLA in one page"):
//   q_latent[t, h] = q_nope[t, h] @ W_UK[h]              [T, h, kvLoraRank]
//   score(t, j)    = (q_latent . c_kv[j] + q_pe . k_pe[j]) * softmaxScale
//   o_latent[t, h] = softmax_j(score) @ c_kv              [T, h, kvLoraRank]
//   out[t, h]      = W_UV[h] @ o_latent[t, h]             [T, h, vHeadDim]
// Query token t of request r (its i-th new token) sees cached tokens [0, numComputedTokens[r] + i]:
// causal within the step, everything before it.

import { CpuTensor, cpuF32 } from '../../device/cpu-device.js';
import { dot } from '../../device/cpu-kernels.js';
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
import type { AttentionBackendRegistry } from '../registry.js';

/** The reference backend needs nothing beyond the common metadata. */
export type ReferenceMlaMetadata = CommonAttentionMetadata;

/** Block size used when the caller does not ask for one. */
const DEFAULT_BLOCK_SIZE = 16;

export class ReferenceMlaMetadataBuilder implements AttentionMetadataBuilder<ReferenceMlaMetadata> {
  build(common: CommonAttentionMetadata): ReferenceMlaMetadata {
    if (common.queryStartLoc.length !== common.numReqs + 1) {
      throw new Error(`reference-mla: queryStartLoc has ${common.queryStartLoc.length} entries for ${common.numReqs} requests`);
    }
    if (common.slotMapping.length !== common.numTokens) {
      throw new Error(`reference-mla: slotMapping has ${common.slotMapping.length} entries for ${common.numTokens} tokens`);
    }
    return common;
  }
}

export class ReferenceMlaImpl implements MlaAttentionImpl<ReferenceMlaMetadata> {
  readonly #model: MlaModelSpec;

  constructor(model: MlaModelSpec) {
    this.#model = model;
  }

  forward(inputs: MlaForwardInputs, cache: KvCache, weights: MlaLayerWeights, md: ReferenceMlaMetadata): Tensor {
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
    if (cache.layout.entryWidth !== W) throw new Error(`reference-mla: cache rows of ${cache.layout.entryWidth}, model needs ${W}`);
    if (q.length !== T * H * (N + R)) throw new Error(`reference-mla: q ${inputs.q.shape.join('x')} for ${T} tokens`);

    // 1. Write the step's latent rows into their slots.
    const numSlots = cache.numBlocks * bs;
    for (let t = 0; t < T; t++) {
      const slot = md.slotMapping[t]!;
      if (slot < 0 || slot >= numSlots) throw new Error(`reference-mla: slot ${slot} out of range [0, ${numSlots})`);
      kv.set(cKv.subarray(t * L, (t + 1) * L), slot * W);
      kv.set(kPe.subarray(t * R, (t + 1) * R), slot * W + L);
    }

    const out = new Float32Array(T * H * V);
    const qLatent = new Float32Array(L);
    const oLatent = new Float64Array(L);
    const scale = weights.softmaxScale;
    for (let r = 0; r < md.numReqs; r++) {
      const qStart = md.queryStartLoc[r]!;
      const qEnd = md.queryStartLoc[r + 1]!;
      const computed = md.numComputedTokens[r]!;
      const seqLen = md.seqLens[r]!;
      if (computed + (qEnd - qStart) !== seqLen) {
        throw new Error(`reference-mla: request ${r}: ${computed} computed + ${qEnd - qStart} new != seqLen ${seqLen}`);
      }
      // Slots of this request's cached tokens, in order.
      const slots = new Int32Array(seqLen);
      for (let j = 0; j < seqLen; j++) {
        const block = md.blockTables[r * md.maxBlocksPerReq + Math.floor(j / bs)]!;
        slots[j] = block * bs + (j % bs);
      }
      const scores = new Float64Array(seqLen);
      for (let t = qStart; t < qEnd; t++) {
        const visible = computed + (t - qStart) + 1;
        for (let h = 0; h < H; h++) {
          const qb = (t * H + h) * (N + R);
          // q_latent = q_nope @ W_UK[h], W_UK[h] is [N, L].
          qLatent.fill(0);
          for (let n = 0; n < N; n++) {
            const qv = q[qb + n]!;
            const wb = (h * N + n) * L;
            for (let l = 0; l < L; l++) qLatent[l]! += qv * wUk[wb + l]!;
          }
          let max = Number.NEGATIVE_INFINITY;
          for (let j = 0; j < visible; j++) {
            const row = slots[j]! * W;
            const s = (dot(qLatent, 0, kv, row, L) + dot(q, qb + N, kv, row + L, R)) * scale;
            scores[j] = s;
            if (s > max) max = s;
          }
          let sum = 0;
          for (let j = 0; j < visible; j++) {
            const e = Math.exp(scores[j]! - max);
            scores[j] = e;
            sum += e;
          }
          oLatent.fill(0);
          for (let j = 0; j < visible; j++) {
            const p = scores[j]! / sum;
            const row = slots[j]! * W;
            for (let l = 0; l < L; l++) oLatent[l]! += p * kv[row + l]!;
          }
          // out = W_UV[h] @ o_latent, W_UV[h] is [V, L].
          const ob = (t * H + h) * V;
          for (let v = 0; v < V; v++) {
            const wb = (h * V + v) * L;
            let s = 0;
            for (let l = 0; l < L; l++) s += wUv[wb + l]! * oLatent[l]!;
            out[ob + v] = s;
          }
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
    if (ctx.device.info.kind !== 'cpu') reasons.push(`runs on the CPU device only (device is ${ctx.device.info.name})`);
    if (ctx.blockSize !== undefined && (!Number.isInteger(ctx.blockSize) || ctx.blockSize < 1)) {
      reasons.push(`block size must be a positive integer (got ${ctx.blockSize})`);
    }
    return reasons;
  }

  cacheLayout(ctx: BackendSelectionContext): KvCacheLayout {
    const blockSize = ctx.blockSize ?? DEFAULT_BLOCK_SIZE;
    const entryWidth = ctx.model.kvLoraRank + ctx.model.qkRopeHeadDim;
    return { blockSize, entryWidth, dtype: 'f32', bytesPerBlock: blockSize * entryWidth * 4 * ctx.model.numLayers };
  }

  allocateCache(device: Device, layout: KvCacheLayout, numBlocks: number): KvCache {
    return { layout, numBlocks, tensor: device.zeros([numBlocks, layout.blockSize, 1, layout.entryWidth], 'f32') };
  }

  metadataBuilder(_device: Device, _model: MlaModelSpec, _layout: KvCacheLayout): ReferenceMlaMetadataBuilder {
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
