// CUDA tensors: a shape and dtype over a reference-counted block of device memory. Views (reshape)
// share the block; the block goes back to the caching allocator when the last tensor over it is
// released or garbage-collected.
import type { DType, Tensor } from '@flashserve/core';

/** Storage dtypes on the GPU: floating point is bf16 (or f32 where an op says so), indices i32. */
export type CudaDType = 'f32' | 'bf16' | 'i32';

export function elementBytes(dtype: CudaDType): number {
  return dtype === 'bf16' ? 2 : 4;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid tensor shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

/** One device allocation; `free` is called once when its last tensor lets go of it. */
export class Storage {
  refs = 0;
  freed = false;
  constructor(
    readonly ptr: bigint,
    readonly bytes: number,
    private readonly freeFn: (ptr: bigint) => void,
  ) {}

  retain(): void {
    this.refs++;
  }

  drop(): void {
    if (this.freed) return;
    if (--this.refs <= 0) {
      this.freed = true;
      this.freeFn(this.ptr);
    }
  }
}

// NOTE: tensors the model forgets without release() still give their memory back when collected;
// on one stream that is safe at any time (see csrc/runtime/allocator.h).
const collector = new FinalizationRegistry<Storage>((s) => s.drop());

export class CudaTensor implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Device address of the first element: for other addons (the MLA kernels) to read and write. */
  readonly ptr: bigint;
  readonly numel: number;
  #storage: Storage | undefined;
  #released = false;

  /** `storage` undefined means borrowed: a graph replay's view of memory owned by the graph. */
  constructor(shape: readonly number[], dtype: CudaDType, ptr: bigint, storage: Storage | undefined) {
    // A private copy (readonly by type; not frozen: Object.freeze costs more than the rest of the
    // constructor, and a graph replay pass builds a tensor per input before the graph can launch).
    this.shape = shape.slice();
    this.dtype = dtype;
    this.ptr = ptr;
    this.numel = numelOf(shape);
    this.#storage = storage;
    if (storage) {
      storage.retain();
      collector.register(this, storage, this);
    }
  }

  get cudaDtype(): CudaDType {
    return this.dtype as CudaDType;
  }

  get bytes(): number {
    return this.numel * elementBytes(this.cudaDtype);
  }

  get released(): boolean {
    return this.#released;
  }

  /** A view with another shape over the same storage. */
  view(shape: readonly number[]): CudaTensor {
    return new CudaTensor(shape, this.cudaDtype, this.ptr, this.#storage);
  }

  /** A view of `shape` starting `byteOffset` bytes into this tensor (it must fit inside). */
  viewAt(shape: readonly number[], byteOffset: number): CudaTensor {
    if (byteOffset < 0 || byteOffset + numelOf(shape) * elementBytes(this.cudaDtype) > this.bytes)
      throw new Error(
        `view of [${shape.join(', ')}] at byte ${byteOffset} does not fit a tensor of ${this.bytes} bytes`,
      );
    return new CudaTensor(shape, this.cudaDtype, this.ptr + BigInt(byteOffset), this.#storage);
  }

  /** Keeps this tensor's memory from going back to the allocator until the returned storage is
   * dropped, whatever happens to the tensor (a launch held back reads it later). Undefined for
   * borrowed memory. NOTE: a counter, not a view: no FinalizationRegistry entry on a hot path. */
  retainStorage(): Storage | undefined {
    this.#storage?.retain();
    return this.#storage;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#storage) {
      collector.unregister(this);
      this.#storage.drop();
      this.#storage = undefined;
    }
  }
}
