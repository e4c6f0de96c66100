// Weight sources beyond a plain checkpoint: transformers 5's fused expert tensors, dummy weights from
// a seed, and the errors a checkpoint that does not fit its config raises.

import {
  CpuDevice,
  type HostTensor,
  loadDeepseekConfig,
  referenceMlaBackend,
  SafetensorsCheckpoint,
  type WeightSource,
} from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { createDeepseekModelFromWeights, DummyWeightSource, tinyDeepseekConfig } from '../src/index.js';
import { expected, fixtureDir } from './support/fixtures.js';
import { maxAbsDiff, runGreedy } from './support/paged-runner.js';

/** Wraps a source, renaming/reshaping/dropping tensors. */
class EditedSource implements WeightSource {
  readonly description = 'edited test weights';
  constructor(
    readonly base: WeightSource,
    readonly extra: Map<string, HostTensor>,
    readonly drop: (name: string) => boolean,
  ) {}
  names(): string[] {
    return [...this.base.names().filter((n) => !this.drop(n)), ...this.extra.keys()];
  }
  has(name: string): boolean {
    return this.extra.has(name) || (!this.drop(name) && this.base.has(name));
  }
  info(name: string): { dtype: string; shape: readonly number[] } {
    const e = this.extra.get(name);
    return e === undefined ? this.base.info(name) : { dtype: 'F32', shape: e.shape };
  }
  read(name: string): HostTensor {
    return this.extra.get(name) ?? this.base.read(name);
  }
}

const name = 'v3-moe-group-yarn-sharded';
const config = loadDeepseekConfig(fixtureDir(name));
const opts = () => ({ device: new CpuDevice(), backend: referenceMlaBackend() });

describe('weight sources', () => {
  it("loads transformers 5's fused expert tensors (gate_up_proj [E, 2I, H], down_proj [E, H, I])", () => {
    const ckpt = new SafetensorsCheckpoint(fixtureDir(name));
    const moe = config.moe!;
    const [E, I, H] = [moe.nRoutedExperts, moe.moeIntermediateSize, config.hiddenSize];
    const extra = new Map<string, HostTensor>();
    for (let layer = moe.firstKDenseReplace; layer < config.numHiddenLayers; layer++) {
      const p = `model.layers.${layer}.mlp.experts.`;
      const gateUp = new Float32Array(E * 2 * I * H);
      const down = new Float32Array(E * H * I);
      for (let e = 0; e < E; e++) {
        gateUp.set(ckpt.read(`${p}${e}.gate_proj.weight`).data as Float32Array, e * 2 * I * H);
        gateUp.set(ckpt.read(`${p}${e}.up_proj.weight`).data as Float32Array, (e * 2 + 1) * I * H);
        down.set(ckpt.read(`${p}${e}.down_proj.weight`).data as Float32Array, e * H * I);
      }
      extra.set(`${p}gate_up_proj`, { data: gateUp, dtype: 'f32', shape: [E, 2 * I, H] });
      extra.set(`${p}down_proj`, { data: down, dtype: 'f32', shape: [E, H, I] });
    }
    const fused = new EditedSource(ckpt, extra, (n) => /experts\.\d+\./.test(n));
    const model = createDeepseekModelFromWeights(config, fused, opts());
    ckpt.close();
    const exp = expected(name);
    const [a] = runGreedy(model, [exp.prompt], { blockSize: 16, chunk: 64, steps: 3 });
    expect(maxAbsDiff(a!.promptLogits, exp.logits)).toBeLessThan(1e-4);
    expect(a!.generated).toEqual(exp.greedy.slice(0, 3));
  });

  it('builds a model from dummy weights, the same for the same seed', () => {
    const run = (seed: number) => {
      const model = createDeepseekModelFromWeights(config, new DummyWeightSource(config, seed), opts());
      return runGreedy(model, [[5, 6, 7, 8, 9]], { blockSize: 16, chunk: 64, steps: 4 })[0]!;
    };
    const a = run(3);
    const b = run(3);
    const c = run(4);
    expect(Array.from(a.promptLogits)).toEqual(Array.from(b.promptLogits));
    expect(a.generated).toEqual(b.generated);
    expect(maxAbsDiff(a.promptLogits, c.promptLogits)).toBeGreaterThan(1e-3);
    expect(a.promptLogits.every(Number.isFinite)).toBe(true);
  });

  it('names a missing or misshapen tensor', () => {
    const ckpt = new SafetensorsCheckpoint(fixtureDir(name));
    const missing = new EditedSource(ckpt, new Map(), (n) => n === 'model.layers.2.mlp.gate.weight');
    expect(() => createDeepseekModelFromWeights(config, missing, opts())).toThrow(
      expect.objectContaining({
        code: 'FS_ERR_LOAD_TENSOR_MISSING',
        message: expect.stringMatching(/model\.layers\.2\.mlp\.gate\.weight/),
      }),
    );
    const wrong = new EditedSource(
      ckpt,
      new Map([['model.norm.weight', { data: new Float32Array(3), dtype: 'f32' as const, shape: [3] }]]),
      () => false,
    );
    expect(() => createDeepseekModelFromWeights(config, wrong, opts())).toThrow(
      /shape \[3\], expected \[64\]/,
    );
    ckpt.close();
  });
});

describe('presets', () => {
  it('the tiny preset is a ~10M-parameter V3 model that runs on dummy weights', () => {
    const tiny = tinyDeepseekConfig();
    const weights = new DummyWeightSource(tiny, 7);
    let params = 0;
    for (const n of weights.names()) params += weights.info(n).shape.reduce((a, b) => a * b, 1);
    expect(params).toBeGreaterThan(9e6);
    expect(params).toBeLessThan(11e6);
    const model = createDeepseekModelFromWeights(tiny, weights, opts());
    const [out] = runGreedy(model, [[3, 1, 4, 1, 5, 9, 2, 6]], { blockSize: 16, chunk: 64, steps: 2 });
    expect(out!.promptLogits.length).toBe(tiny.vocabSize);
    expect(out!.promptLogits.every(Number.isFinite)).toBe(true);
  });
});
