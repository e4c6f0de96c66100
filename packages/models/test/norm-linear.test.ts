// The model through a device that has Device.addRmsNormLinear equals the model through one that lacks
// it (the two-op fallback), logits bit for bit: the norms are handed to the device with the right
// Linear, residual and normed rows, at every layer and before lm_head (where decode steps skip the row
// gathers).

import {
  CpuDevice,
  type Device,
  type NormLinearResult,
  referenceMlaBackend,
  type Tensor,
} from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { loadDeepseekModel } from '../src/index.js';
import { expected, fixtureDir } from './support/fixtures.js';
import { runGreedy } from './support/paged-runner.js';

/** A CpuDevice with addRmsNormLinear (the composition it is defined as); counts its calls. */
function withNormLinear(cpu: CpuDevice): { device: Device; calls: { n: number; kept: number } } {
  const calls = { n: 0, kept: 0 };
  const op = (
    x: Tensor,
    residual: Tensor | undefined,
    normWeight: Tensor,
    eps: number,
    w: Tensor,
    bias?: Tensor,
    keepNormed?: boolean,
  ): NormLinearResult => {
    calls.n++;
    if (keepNormed) calls.kept++;
    const r = residual === undefined ? undefined : cpu.addRmsNorm(x, residual, normWeight, eps);
    const normed = r?.out ?? cpu.rmsNorm(x, normWeight, eps);
    return {
      out: cpu.linear(normed, w, bias),
      residual: r?.residual,
      normed: keepNormed ? normed : undefined,
    };
  };
  const device = new Proxy(cpu, {
    get(target, prop) {
      if (prop === 'addRmsNormLinear') return op;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Device;
  return { device, calls };
}

describe.each([
  'v2-lora-yarn-bf16', // dense layer 0, then MoE layers; q_lora
  'v3-nolora-half-tied-f16', // MoE from layer 0, tied lm_head
])('addRmsNormLinear on fixture %s', (name) => {
  it('gives the same logits as the two-op path, with one call per norm', () => {
    const exp = expected(name);
    const opts = { blockSize: 16, chunk: 8, steps: 4 };
    const plain = loadDeepseekModel(fixtureDir(name), {
      device: new CpuDevice(),
      backend: referenceMlaBackend(),
    });
    const { device, calls } = withNormLinear(new CpuDevice());
    const fused = loadDeepseekModel(fixtureDir(name), { device, backend: referenceMlaBackend() });
    const want = runGreedy(plain, [exp.prompt, exp.prompt2], opts);
    const got = runGreedy(fused, [exp.prompt, exp.prompt2], opts);
    for (let s = 0; s < want.length; s++) {
      expect(got[s]!.promptLogits).toEqual(want[s]!.promptLogits);
      expect(got[s]!.generated).toEqual(want[s]!.generated);
    }
    const layers = plain.config.numHiddenLayers;
    const moe = plain.config.moe;
    const moeLayers = moe === null ? 0 : layers - moe.firstKDenseReplace;
    expect(calls.n % (2 * layers + 1)).toBe(0);
    expect(calls.kept).toBe((calls.n / (2 * layers + 1)) * moeLayers);
  });
});
