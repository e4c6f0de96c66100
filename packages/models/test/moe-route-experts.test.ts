// The model through a device that has Device.moeRouteExperts equals the model through one that lacks
// it (moeRoute then moeExperts), logits bit for bit, with one moeRouteExperts call per MoE layer and
// step and no separate moeRoute.

import {
  CpuDevice,
  type Device,
  type MoeExpertWeights,
  type MoeRouteParams,
  referenceMlaBackend,
  type Tensor,
} from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { loadDeepseekModel } from '../src/index.js';
import { expected, fixtureDir } from './support/fixtures.js';
import { runGreedy } from './support/paged-runner.js';

/** A CpuDevice with moeRouteExperts (the composition it is defined as); counts the MoE calls. */
function withRouteExperts(cpu: CpuDevice): { device: Device; calls: { fused: number; route: number } } {
  const calls = { fused: 0, route: 0 };
  const op = (x: Tensor, logits: Tensor, params: MoeRouteParams, experts: MoeExpertWeights): Tensor => {
    calls.fused++;
    const routing = cpu.moeRoute(logits, params);
    const out = cpu.moeExperts(x, routing, experts);
    cpu.release(routing.ids);
    cpu.release(routing.weights);
    return out;
  };
  const device = new Proxy(cpu, {
    get(target, prop) {
      if (prop === 'moeRouteExperts') return op;
      if (prop === 'moeRoute') calls.route++;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Device;
  return { device, calls };
}

describe.each([
  'v2-lora-yarn-bf16', // dense layer 0, then MoE layers
  'v3-nolora-half-tied-f16', // MoE from layer 0, V3 router
])('moeRouteExperts on fixture %s', (name) => {
  it('gives the same logits as moeRoute + moeExperts', () => {
    const exp = expected(name);
    const opts = { blockSize: 16, chunk: 8, steps: 4 };
    const plain = loadDeepseekModel(fixtureDir(name), {
      device: new CpuDevice(),
      backend: referenceMlaBackend(),
    });
    const { device, calls } = withRouteExperts(new CpuDevice());
    const fused = loadDeepseekModel(fixtureDir(name), { device, backend: referenceMlaBackend() });
    const want = runGreedy(plain, [exp.prompt, exp.prompt2], opts);
    const got = runGreedy(fused, [exp.prompt, exp.prompt2], opts);
    for (let s = 0; s < want.length; s++) {
      expect(got[s]!.promptLogits).toEqual(want[s]!.promptLogits);
      expect(got[s]!.generated).toEqual(want[s]!.generated);
    }
    const moe = plain.config.moe;
    const moeLayers = moe === null ? 0 : plain.config.numHiddenLayers - moe.firstKDenseReplace;
    expect(moeLayers).toBeGreaterThan(0);
    expect(calls.fused % moeLayers).toBe(0);
    expect(calls.fused).toBeGreaterThan(0);
    expect(calls.route).toBe(0);
  });
});
