// The CPU ProcessGroup: the shared-memory collectives of shm-group.ts, over CpuDevice tensors.
// Tensor forms copy the tensor's float32 data out, run the host collective and wrap a new tensor;
// on the CPU that copy is the same memcpy the collective needs anyway.

import { CpuTensor, cpuF32 } from '../device/cpu-device.js';
import type { Tensor } from '../device/device.js';
import type { ProcessGroup } from './process-group.js';
import { type AbortKind, SharedMemoryGroup, type ShmGroupInit } from './shm-group.js';

export class CpuProcessGroup implements ProcessGroup {
  readonly backend = 'cpu-shm' as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly shm: SharedMemoryGroup;
  #destroyed = false;

  constructor(init: ShmGroupInit, rank: number) {
    this.shm = new SharedMemoryGroup(init, rank);
    this.rank = rank;
    this.worldSize = init.worldSize;
  }

  get brokenReason(): string | undefined {
    return this.#destroyed ? 'the process group was destroyed' : this.shm.brokenReason;
  }

  allReduceSum(x: Tensor): Tensor;
  allReduceSum(x: Float32Array): Float32Array;
  allReduceSum(x: Tensor | Float32Array): Tensor | Float32Array {
    if (x instanceof Float32Array) return this.shm.allReduceSum(x);
    const data = cpuF32(x, 'allReduceSum').slice();
    return new CpuTensor(x.shape, 'f32', this.shm.allReduceSum(data));
  }

  allGather(x: Tensor): Tensor;
  allGather(x: Float32Array): Float32Array;
  allGather(x: Tensor | Float32Array): Tensor | Float32Array {
    if (x instanceof Float32Array) return this.shm.allGather(x);
    const out = this.shm.allGather(cpuF32(x, 'allGather'));
    return new CpuTensor([this.worldSize, ...x.shape], 'f32', out);
  }

  broadcast(x: Tensor, root: number): Tensor;
  broadcast(x: Float32Array | Int32Array, root: number): Float32Array | Int32Array;
  broadcast(x: Tensor | Float32Array | Int32Array, root: number): Tensor | Float32Array | Int32Array {
    if (x instanceof Float32Array || x instanceof Int32Array) return this.shm.broadcast(x, root);
    if (!(x instanceof CpuTensor)) throw new Error('broadcast: tensor does not belong to the CPU device');
    return new CpuTensor(x.shape, x.dtype, this.shm.broadcast(x.data.slice(), root));
  }

  barrier(): void {
    this.shm.barrier();
  }

  abort(reason: string, kind: AbortKind = 'broken'): void {
    this.shm.abort(reason, kind);
  }

  destroy(): void {
    this.#destroyed = true;
  }
}
