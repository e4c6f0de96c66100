// The model hints each MoE layer's shared-experts gate/up to the device (Device.prefetch) before that
// layer's attention, once per layer and step, and a device that has the op gives the logits of one
// that lacks it, bit for bit.

import type { CpuDevice, Device, Tensor } from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { cpuWith, expectSameAsPlainCpu } from './support/optional-ops.js';

describe.each([
  'v2-lora-yarn-bf16', // dense layer 0, then MoE layers with shared experts
  'v3-nolora-half-tied-f16', // MoE from layer 0
])('prefetch hints on fixture %s', (name) => {
  it("hint the shared experts' gate/up before each MoE layer's attention", () => {
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
        calls.push('experts');
        return cpu.moeExperts(...args);
      },
    }));
    const plain = expectSameAsPlainCpu(name, device);
    const c = plain.config;
    const moe = c.moe!;
    expect(moe.nSharedExperts).toBeGreaterThan(0);
    const moeLayers = c.numHiddenLayers - moe.firstKDenseReplace;
    expect(hinted.length).toBeGreaterThan(0);
    expect(hinted.length % moeLayers).toBe(0);
    for (const t of hinted)
      expect(t.shape).toEqual([2 * moe.moeIntermediateSize * moe.nSharedExperts, c.hiddenSize]);
    // Every hint is followed by that layer's attention, then its experts, before the next hint.
    const text = calls.join(' ');
    expect(text).not.toMatch(/prefetch (?!attention)/);
    expect(
      text
        .split('prefetch')
        .slice(1)
        .every((part) => /^ attention( attention)* experts/.test(part)),
    ).toBe(true);
  });
});
