// `--load-format dummy` without gigabytes of host work: a WeightSource whose matrices come back as
// EMPTY host arrays, which a CudaDevice created with `dummyEmptyUploadsSeed` fills with random
// numbers on the GPU at upload time. Norm weights are real (ones) and biases small, as in
// transformers' initialisation, so activations stay O(1).
import type { HostTensor, WeightSource } from '@flashserve/core';

export class GpuDummyWeightSource implements WeightSource {
  readonly description: string;
  readonly #manifest: ReadonlyMap<string, readonly number[]>;

  /** `manifest`: every tensor name and shape (models' deepseekWeightManifest(config)). */
  constructor(manifest: ReadonlyMap<string, readonly number[]>) {
    this.#manifest = manifest;
    this.description = 'dummy weights generated on the GPU';
  }

  names(): string[] {
    return [...this.#manifest.keys()];
  }

  has(name: string): boolean {
    return this.#manifest.has(name);
  }

  info(name: string): { dtype: string; shape: readonly number[] } {
    const shape = this.#shape(name);
    return { dtype: 'BF16', shape };
  }

  #shape(name: string): readonly number[] {
    const shape = this.#manifest.get(name);
    if (shape === undefined) throw new Error(`dummy weights: no tensor named ${name}`);
    return shape;
  }

  read(name: string): HostTensor {
    const shape = this.#shape(name);
    const n = shape.reduce((a, b) => a * b, 1);
    if (name.endsWith('norm.weight')) return { data: new Float32Array(n).fill(1), dtype: 'f32', shape };
    if (name.endsWith('.bias') || name.endsWith('e_score_correction_bias')) {
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = 0.01 * Math.sin(i * 12.9898);
      return { data, dtype: 'f32', shape };
    }
    return { data: new Float32Array(0), dtype: 'f32', shape };
  }
}
