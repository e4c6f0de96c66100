// MoE routing and expert evaluation on host arrays, for CpuDevice.
//
// Routing follows transformers 5's DeepSeek routers (DeepseekV2TopkRouter, DeepseekV3TopkRouter):
// scores per expert, an optional group stage that keeps `topkGroup` of `nGroup` expert groups, then
// the top `topK` experts of the kept groups. Ties (measure zero with real weights) go to the lower id.

import { matmulNt } from './cpu-kernels.js';
import type { MoeRouteParams } from './device.js';

/** Indices of the k largest values[i] among i with allowed(i), in descending order. */
function topIndices(values: Float64Array, k: number, allowed: (i: number) => boolean): number[] {
  const picked: number[] = [];
  const taken = new Uint8Array(values.length);
  for (let j = 0; j < k; j++) {
    let best = -1;
    let bestValue = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < values.length; i++) {
      if (taken[i] || !allowed(i)) continue;
      const v = values[i]!;
      if (best < 0 || v > bestValue) {
        best = i;
        bestValue = v;
      }
    }
    if (best < 0) break;
    taken[best] = 1;
    picked.push(best);
  }
  return picked;
}

/**
 * logits [T, E] -> ids [T, topK], weights [T, topK].
 * Throws when the parameters cannot describe a valid routing (the model validates configs first, so
 * this is a programming error, not user input).
 */
export function routeTokens(
  logits: Float32Array,
  numTokens: number,
  numExperts: number,
  params: MoeRouteParams,
  correctionBias: Float32Array | undefined,
): { ids: Int32Array; weights: Float32Array } {
  const { topK, nGroup, topkGroup } = params;
  if (numExperts % nGroup !== 0)
    throw new Error(`moeRoute: ${numExperts} experts do not split into ${nGroup} groups`);
  if (topK > numExperts) throw new Error(`moeRoute: topK ${topK} > ${numExperts} experts`);
  const perGroup = numExperts / nGroup;
  const ids = new Int32Array(numTokens * topK);
  const weights = new Float32Array(numTokens * topK);
  const scores = new Float64Array(numExperts);
  const choice = new Float64Array(numExperts);
  const groupScores = new Float64Array(nGroup);
  for (let t = 0; t < numTokens; t++) {
    const row = t * numExperts;
    if (params.kind === 'v2-softmax') {
      let max = Number.NEGATIVE_INFINITY;
      for (let e = 0; e < numExperts; e++) max = Math.max(max, logits[row + e]!);
      let sum = 0;
      for (let e = 0; e < numExperts; e++) {
        const v = Math.exp(logits[row + e]! - max);
        scores[e] = v;
        sum += v;
      }
      for (let e = 0; e < numExperts; e++) {
        scores[e] = Math.fround(scores[e]! / sum);
        choice[e] = scores[e]!;
      }
    } else {
      for (let e = 0; e < numExperts; e++) {
        const s = Math.fround(1 / (1 + Math.exp(-logits[row + e]!)));
        scores[e] = s;
        choice[e] = Math.fround(s + (correctionBias === undefined ? 0 : correctionBias[e]!));
      }
    }

    let allowed: (e: number) => boolean = () => true;
    if (nGroup > 1) {
      for (let g = 0; g < nGroup; g++) {
        const base = g * perGroup;
        if (params.kind === 'v2-softmax') {
          // V2: a group scores its best expert.
          let m = Number.NEGATIVE_INFINITY;
          for (let i = 0; i < perGroup; i++) m = Math.max(m, choice[base + i]!);
          groupScores[g] = m;
        } else {
          // V3: a group scores the sum of its two best (bias-corrected) experts.
          let a = Number.NEGATIVE_INFINITY;
          let b = Number.NEGATIVE_INFINITY;
          for (let i = 0; i < perGroup; i++) {
            const v = choice[base + i]!;
            if (v > a) {
              b = a;
              a = v;
            } else if (v > b) b = v;
          }
          groupScores[g] = perGroup === 1 ? a : a + b;
        }
      }
      const keep = new Uint8Array(nGroup);
      for (const g of topIndices(groupScores, topkGroup, () => true)) keep[g] = 1;
      allowed = (e) => keep[Math.floor(e / perGroup)] === 1;
    }

    const picked = topIndices(choice, topK, allowed);
    let sum = 0;
    for (const e of picked) sum += scores[e]!;
    const denom = params.normTopkProb ? sum + 1e-20 : 1;
    for (let j = 0; j < topK; j++) {
      const e = picked[j] ?? 0;
      ids[t * topK + j] = e;
      weights[t * topK + j] = (scores[e]! / denom) * params.routedScalingFactor;
    }
  }
  return { ids, weights };
}

/**
 * out[t] = sum_j weights[t, j] * down_e(silu(gate_e x_t) * up_e x_t), e = ids[t, j].
 * gateUp [E, 2I, H], down [E, H, I]. Tokens are grouped by expert so each expert's weights are
 * streamed once per call, and experts are visited in id order (transformers' summation order).
 */
export function runExperts(
  x: Float32Array,
  numTokens: number,
  hidden: number,
  ids: Int32Array,
  weights: Float32Array,
  topK: number,
  gateUp: Float32Array,
  down: Float32Array,
  numExperts: number,
  inter: number,
): Float32Array {
  const out = new Float32Array(numTokens * hidden);
  const byExpert: number[][] = Array.from({ length: numExperts }, () => []);
  for (let i = 0; i < numTokens * topK; i++) {
    const e = ids[i]!;
    if (e < 0 || e >= numExperts)
      throw new Error(`moeExperts: expert id ${e} out of range [0, ${numExperts})`);
    byExpert[e]!.push(i);
  }
  const acc = new Float64Array(numTokens * hidden);
  for (let e = 0; e < numExperts; e++) {
    const slots = byExpert[e]!;
    const n = slots.length;
    if (n === 0) continue;
    const xs = new Float32Array(n * hidden);
    for (let r = 0; r < n; r++) {
      const t = Math.floor(slots[r]! / topK);
      xs.set(x.subarray(t * hidden, (t + 1) * hidden), r * hidden);
    }
    const gu = new Float32Array(n * 2 * inter);
    matmulNt(xs, 0, n, hidden, gateUp, e * 2 * inter * hidden, 2 * inter, gu, 0);
    const act = new Float32Array(n * inter);
    for (let r = 0; r < n; r++) {
      const gb = r * 2 * inter;
      for (let i = 0; i < inter; i++) {
        const g = gu[gb + i]!;
        act[r * inter + i] = (g / (1 + Math.exp(-g))) * gu[gb + inter + i]!;
      }
    }
    const ys = new Float32Array(n * hidden);
    matmulNt(act, 0, n, inter, down, e * hidden * inter, hidden, ys, 0);
    for (let r = 0; r < n; r++) {
      const slot = slots[r]!;
      const t = Math.floor(slot / topK);
      const wgt = weights[slot]!;
      const ob = t * hidden;
      for (let h = 0; h < hidden; h++) acc[ob + h]! += Math.fround(ys[r * hidden + h]! * wgt);
    }
  }
  for (let i = 0; i < acc.length; i++) out[i] = acc[i]!;
  return out;
}
