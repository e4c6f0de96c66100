// The model hints each layer's first MLP weight to the device (Device.prefetch) before that layer's
// attention, once per layer and step: a dense layer's gate/up, a MoE layer's shared-experts gate/up. A
// device that has the op gives the logits of one that lacks it, bit for bit.

import type { CpuDevice, Device, Tensor } from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { cpuWith, expectSameAsPlainCpu } from './support/optional-ops.js';

describe.each([
  'v2-lora-yarn-bf16', // dense layer 0, then MoE layers with shared experts
  'v3-nolora-half-tied-f16', // MoE from layer 0
])('prefetch hints on fixture %s', (name) => {
  it("hint the MLP's gate/up before each layer's attention", () => {
    const calls: string[] = [];
    const hinted: Tensor[] = [];
    const { device } = cpuWith((cpu: CpuDevice) => ({
      prefetch: (t: Tensor) => {
        calls.push('prefetch');
        hinted.push(t);
      },
      mlaInputs: (...args: Parameters<Device['mlaInputs']>) => {
        calls.push('attention');
        return cpu.mlaInputs(...args);
      },
      moeExperts: (...args: Parameters<Device['moeExperts']>) => {
        calls.push('mlp');
        return cpu.moeExperts(...args);
      },
      siluAndMul: (x: Tensor) => {
        calls.push('mlp');
        return cpu.siluAndMul(x);
      },
    }));
    const plain = expectSameAsPlainCpu(name, device);
    const c = plain.config;
    const moe = c.moe!;
    expect(moe.nSharedExperts).toBeGreaterThan(0);
    const dense = moe.firstKDenseReplace;
    const perStep = [
      ...Array.from({ length: dense }, () => [2 * c.intermediateSize, c.hiddenSize]),
      ...Array.from({ length: c.numHiddenLayers - dense }, () => [
        2 * moe.moeIntermediateSize * moe.nSharedExperts,
        c.hiddenSize,
      ]),
    ];
    expect(hinted.length).toBeGreaterThan(0);
    expect(hinted.length % c.numHiddenLayers).toBe(0);
    for (const [i, t] of hinted.entries()) expect(t.shape).toEqual(perStep[i % c.numHiddenLayers]);
    // Every hint is followed by that layer's attention, then its MLP, before the next hint.
    const text = calls.join(' ');
    expect(text).not.toMatch(/prefetch (?!attention)/);
    expect(
      text
        .split('prefetch')
        .slice(1)
        .every((part) => /^ attention( attention)* mlp/.test(part)),
    ).toBe(true);
  });
});
