// The feed-forward half of a DeepSeek layer: a dense SwiGLU MLP (first_k_dense_replace layers), or a
// routed mixture of experts plus shared experts (one Device.moeExperts call runs both, so a device can
// fuse them: at a decode step that is two launches instead of eight).

import {
  type DeepseekConfig,
  type Device,
  type GatedMlpWeights,
  type MoeExpertWeights,
  type MoeRouteParams,
  moeRouteExpertsByParts,
  type Tensor,
} from '@flashserve/core';
import { routeParams } from './config.js';
import type { WeightReader } from './weights.js';

/** down(silu(gate x) * up x), with gate and up fused into one [2I, H] matrix: one GEMM instead of two. */
export class DenseMlp {
  readonly weights: GatedMlpWeights;

  constructor(w: WeightReader, prefix: string, hidden: number, inter: number) {
    this.weights = {
      gateUp: w.concatRows([`${prefix}gate_proj.weight`, `${prefix}up_proj.weight`], [2 * inter, hidden]),
      down: w.tensor(`${prefix}down_proj.weight`, [hidden, inter]),
    };
  }

  /** The Linear that reads the layer's normed input (the model may fold the norm into it). */
  get inputLinear(): Tensor {
    return this.weights.gateUp;
  }

  /** The normed input is not needed past `inputLinear`. */
  readonly needsInput = false;

  /** The weight the block reads first whatever its input: gate/up (the model hints it to the device
   * before the layer's attention: Device.prefetch). */
  get firstWeight(): Tensor {
    return this.weights.gateUp;
  }

  forward(d: Device, x: Tensor): Tensor {
    return this.forwardFrom(d, d.linear(x, this.weights.gateUp));
  }

  /** The rest of `forward` from inputLinear's output gu [T, 2I] (released here). */
  forwardFrom(d: Device, gu: Tensor): Tensor {
    const act = d.siluAndMul(gu);
    d.release(gu);
    const out = d.linear(act, this.weights.down);
    d.release(act);
    return out;
  }
}

export class MoeBlock {
  readonly #gate: Tensor;
  readonly #params: MoeRouteParams;
  readonly #experts: MoeExpertWeights;

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
    const shared =
      moe.nSharedExperts > 0
        ? new DenseMlp(w, `${p}shared_experts.`, H, I * moe.nSharedExperts).weights
        : undefined;
    if (w.has(`${p}experts.gate_up_proj`)) {
      this.#experts = {
        gateUp: w.tensor(`${p}experts.gate_up_proj`, [E, 2 * I, H]),
        down: w.tensor(`${p}experts.down_proj`, [E, H, I]),
        shared,
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
        shared,
      };
    }
  }

  /** The router gate: the Linear that reads the layer's normed input (the model may fold the norm
   * into it). */
  get inputLinear(): Tensor {
    return this.#gate;
  }

  /** The weight the block reads first whatever the routing: the shared experts' gate/up, if any (the
   * model hints it to the device before the layer's attention: Device.prefetch). */
  get firstWeight(): Tensor | undefined {
    return this.#experts.shared?.gateUp;
  }

  /** The experts read the normed input too. */
  readonly needsInput = true;

  forward(d: Device, x: Tensor): Tensor {
    return this.forwardFrom(d, d.linear(x, this.#gate), x);
  }

  /** The rest of `forward` from the router logits [T, E] (released here) and the normed input x. */
  forwardFrom(d: Device, logits: Tensor, x: Tensor): Tensor {
    // Nothing here reads the routing, so a device may route inside its expert kernels.
    const out =
      d.moeRouteExperts !== undefined
        ? d.moeRouteExperts(x, logits, this.#params, this.#experts)
        : moeRouteExpertsByParts(d, x, logits, this.#params, this.#experts);
    d.release(logits);
    return out;
  }
}
