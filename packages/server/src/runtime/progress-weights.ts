// A WeightSource that reports how much of the checkpoint has been read, by bytes of tensor data,
// so the CLI can draw a progress bar while the model loads. Reads pass through unchanged.

import type { HostTensor, WeightSource } from '@flashserve/core';

const BYTES: Readonly<Record<string, number>> = { F32: 4, F16: 2, BF16: 2, I32: 4 };

export class ProgressWeightSource implements WeightSource {
  readonly description: string;
  readonly #inner: WeightSource;
  readonly #onProgress: (fraction: number) => void;
  readonly #totalBytes: number;
  #readBytes = 0;

  constructor(inner: WeightSource, onProgress: (fraction: number) => void) {
    this.#inner = inner;
    this.#onProgress = onProgress;
    this.description = inner.description;
    this.#totalBytes = inner.names().reduce((a, n) => a + this.#bytes(n), 0);
  }

  #bytes(name: string): number {
    const { dtype, shape } = this.#inner.info(name);
    return shape.reduce((a, b) => a * b, 1) * (BYTES[dtype.toUpperCase()] ?? 4);
  }

  names(): string[] {
    return this.#inner.names();
  }

  has(name: string): boolean {
    return this.#inner.has(name);
  }

  info(name: string): { readonly dtype: string; readonly shape: readonly number[] } {
    return this.#inner.info(name);
  }

  read(name: string): HostTensor {
    const t = this.#inner.read(name);
    this.#readBytes += this.#bytes(name);
    if (this.#totalBytes > 0) this.#onProgress(Math.min(1, this.#readBytes / this.#totalBytes));
    return t;
  }
}
