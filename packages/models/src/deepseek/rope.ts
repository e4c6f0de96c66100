// RoPE frequencies and the cos/sin table, computed on the host the way transformers 5.17 does
// (modeling_rope_utils: the default and YaRN init functions), in float32 where torch works in float32,
// then uploaded once. The table already carries YaRN's attention factor, as transformers' cos/sin do.

import type { DeepseekConfig, Device, RopeTable } from '@flashserve/core';
import { yarnMscale } from './config.js';

const f = Math.fround;

/** Inverse frequencies [rotaryDim / 2] and the cos/sin scale (attention factor). */
export function ropeFrequencies(config: DeepseekConfig): { invFreq: Float32Array; attentionFactor: number } {
  const dim = config.qkRopeHeadDim;
  const base = config.rope.theta;
  const half = dim / 2;
  // base ** (arange(0, dim, 2) / dim), each step in float32.
  const posFreqs = new Float32Array(half);
  for (let i = 0; i < half; i++) posFreqs[i] = f(base ** f((2 * i) / dim));
  const yarn = config.rope.yarn;
  const invFreq = new Float32Array(half);
  if (yarn === null) {
    for (let i = 0; i < half; i++) invFreq[i] = f(1 / posFreqs[i]!);
    return { invFreq, attentionFactor: 1 };
  }

  // With original_max_position_embeddings, the scale is the ratio of the context lengths.
  let factor = yarn.factor;
  let originalMax = config.maxPositionEmbeddings;
  if (yarn.originalMaxPositionEmbeddings !== undefined) {
    originalMax = yarn.originalMaxPositionEmbeddings;
    factor = config.maxPositionEmbeddings / originalMax;
  }
  let attentionFactor = yarn.attentionFactor;
  if (attentionFactor === undefined) {
    attentionFactor =
      yarn.mscale && yarn.mscaleAllDim
        ? yarnMscale(factor, yarn.mscale) / yarnMscale(factor, yarn.mscaleAllDim)
        : yarnMscale(factor, 1);
  }
  // Dims rotating fewer than betaSlow times over the original context are interpolated, those rotating
  // more than betaFast times extrapolated, with a linear ramp between.
  const correctionDim = (rotations: number) =>
    (dim * Math.log(originalMax / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  let low = correctionDim(yarn.betaFast);
  let high = correctionDim(yarn.betaSlow);
  if (yarn.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(1, Math.max(0, f(f(i - low) / f(high - low))));
    const extrapolationFactor = f(1 - ramp);
    const extrapolated = f(1 / posFreqs[i]!);
    const interpolated = f(1 / f(factor * posFreqs[i]!));
    invFreq[i] = f(f(interpolated * f(1 - extrapolationFactor)) + f(extrapolated * extrapolationFactor));
  }
  return { invFreq, attentionFactor };
}

/** cos/sin [maxPositions, rotaryDim / 2] on the device. */
export function buildRopeTable(device: Device, config: DeepseekConfig, maxPositions: number): RopeTable {
  const { invFreq, attentionFactor } = ropeFrequencies(config);
  const half = invFreq.length;
  const cos = new Float32Array(maxPositions * half);
  const sin = new Float32Array(maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(invFreq[i]! * p);
      cos[p * half + i] = f(f(Math.cos(angle)) * attentionFactor);
      sin[p * half + i] = f(f(Math.sin(angle)) * attentionFactor);
    }
  }
  return {
    cos: device.upload(cos, [maxPositions, half], 'f32'),
    sin: device.upload(sin, [maxPositions, half], 'f32'),
    rotaryDim: config.qkRopeHeadDim,
    maxPositions,
  };
}
