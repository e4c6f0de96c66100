// The feed-forward half of a DeepSeek layer: a dense SwiGLU MLP (first_k_dense_replace layers and
// shared experts), or a routed mixture of experts plus shared experts.

import type { DeepseekConfig, Device, MoeExpertWeights, MoeRouteParams, Tensor } from '@flashserve/core';
import { routeParams } from './config.js';
import type { WeightReader } from './weights.js';

/** down(silu(gate x) * up x), with gate and up fused into one [2I, H] matrix: one GEMM instead of two. */
export class DenseMlp {
  readonly #gateUp: Tensor;
  readonly #down: Tensor;

  constructor(w: WeightReader, prefix: string, hidden: number, inter: number) {
    this.#gateUp = w.concatRows(
      [`${prefix}gate_proj.weight`, `${prefix}up_proj.weight`],
      [2 * inter, hidden],
    );
    this.#down = w.tensor(`${prefix}down_proj.weight`, [hidden, inter]);
  }

  forward(d: Device, x: Tensor): Tensor {
    const gu = d.linear(x, this.#gateUp);
    const act = d.siluAndMul(gu);
    d.release(gu);
    const out = d.linear(act, this.#down);
    d.release(act);
    return out;
  }
}

export class MoeBlock {
  readonly #gate: Tensor;
  readonly #params: MoeRouteParams;
  readonly #experts: MoeExpertWeights;
  readonly #shared: DenseMlp | undefined;

  constructor(config: DeepseekConfig, layer: number, w: WeightReader) {
    const moe = config.moe;
    if (moe === null) throw new Error('MoeBlock: the config has no MoE');
    const p = `model.layers.${layer}.mlp.`;
    const E = moe.nRoutedExperts;
    const H = config.hiddenSize;
    const I = moe.moeIntermediateSize;
    this.#gate = w.tensor(`${p}gate.weight`);
    // A V3 checkpoint without the bias routes as transformers would with its zero-initialised buffer.
    const bias =
      config.modelType === 'deepseek_v3' ? w.optional(`${p}gate.e_score_correction_bias`) : undefined;
    this.#params = routeParams(config, bias);
    if (w.has(`${p}experts.gate_up_proj`)) {
      this.#experts = {
        gateUp: w.tensor(`${p}experts.gate_up_proj`, [E, 2 * I, H]),
        down: w.tensor(`${p}experts.down_proj`, [E, H, I]),
      };
    } else {
      const gateUpNames: string[] = [];
      const downNames: string[] = [];
      for (let e = 0; e < E; e++) {
        gateUpNames.push(`${p}experts.${e}.gate_proj.weight`, `${p}experts.${e}.up_proj.weight`);
        downNames.push(`${p}experts.${e}.down_proj.weight`);
      }
      this.#experts = {
        gateUp: w.concatRows(gateUpNames, [E, 2 * I, H]),
        down: w.concatRows(downNames, [E, H, I]),
      };
    }
    this.#shared =
      moe.nSharedExperts > 0 ? new DenseMlp(w, `${p}shared_experts.`, H, I * moe.nSharedExperts) : undefined;
  }

  forward(d: Device, x: Tensor): Tensor {
    const logits = d.linear(x, this.#gate); // [T, E]
    const routing = d.moeRoute(logits, this.#params);
    d.release(logits);
    const routed = d.moeExperts(x, routing, this.#experts);
    d.release(routing.ids);
    d.release(routing.weights);
    if (this.#shared === undefined) return routed;
    const shared = this.#shared.forward(d, x);
    const out = d.add(routed, shared);
    d.release(routed);
    d.release(shared);
    return out;
  }
}
