// The model through a device that has Device.moeRouteExperts equals the model through one that lacks
// it (moeRoute then moeExperts), logits bit for bit, with one moeRouteExperts call per MoE layer and
// step and no separate moeRoute.

import { type CpuDevice, type Device, moeRouteExpertsByParts, type Tensor } from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { cpuWith, expectSameAsPlainCpu } from './support/optional-ops.js';

describe.each([
  'v2-lora-yarn-bf16', // dense layer 0, then MoE layers
  'v3-nolora-half-tied-f16', // MoE from layer 0, V3 router
])('moeRouteExperts on fixture %s', (name) => {
  it('gives the same logits as moeRoute + moeExperts', () => {
    let fused = 0;
    const { device, reads } = cpuWith(
      (cpu: CpuDevice) => ({
        moeRouteExperts: (...args: Parameters<NonNullable<Device['moeRouteExperts']>>): Tensor => {
          fused++;
          return moeRouteExpertsByParts(cpu, ...args);
        },
      }),
      ['moeRoute'],
    );
    const plain = expectSameAsPlainCpu(name, device);
    const moe = plain.config.moe;
    const moeLayers = moe === null ? 0 : plain.config.numHiddenLayers - moe.firstKDenseReplace;
    expect(moeLayers).toBeGreaterThan(0);
    expect(fused % moeLayers).toBe(0);
    expect(fused).toBeGreaterThan(0);
    expect(reads.moeRoute).toBe(0);
  });
});
