// The model through a device that has Device.addRmsNormLinear equals the model through one that lacks
// it (the two-op fallback), logits bit for bit: the norms are handed to the device with the right
// Linear, residual and normed rows, at every layer and before lm_head (where decode steps skip the row
// gathers).

import {
  addRmsNormLinearByParts,
  type CpuDevice,
  type Device,
  type NormLinearResult,
} from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { cpuWith, expectSameAsPlainCpu } from './support/optional-ops.js';

describe.each([
  'v2-lora-yarn-bf16', // dense layer 0, then MoE layers; q_lora
  'v3-nolora-half-tied-f16', // MoE from layer 0, tied lm_head
])('addRmsNormLinear on fixture %s', (name) => {
  it('gives the same logits as the two-op path, with one call per norm', () => {
    const calls = { n: 0, kept: 0 };
    const { device } = cpuWith((cpu: CpuDevice) => ({
      addRmsNormLinear: (...args: Parameters<NonNullable<Device['addRmsNormLinear']>>): NormLinearResult => {
        calls.n++;
        if (args[6]) calls.kept++;
        return addRmsNormLinearByParts(cpu, ...args);
      },
    }));
    const plain = expectSameAsPlainCpu(name, device);
    const layers = plain.config.numHiddenLayers;
    const moe = plain.config.moe;
    const moeLayers = moe === null ? 0 : layers - moe.firstKDenseReplace;
    expect(calls.n).toBeGreaterThan(0);
    expect(calls.n % (2 * layers + 1)).toBe(0);
    expect(calls.kept).toBe((calls.n / (2 * layers + 1)) * moeLayers);
  });
});
