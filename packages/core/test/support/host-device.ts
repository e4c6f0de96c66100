// A minimal Device for tests: tensors are host arrays, upload copies, toHost returns the data. Only
// the memory and layout methods exist, and mergeTokenIds; the engine uses nothing else (reshape and
// sliceLast read the rows of prompt logprobs; zeros, write and mergeTokenIds serve async scheduling).

import { mergeTokenIdsInto } from '../../src/device/cpu-kernels.js';
import type { Device, DType, HostData, Tensor } from '../../src/device/device.js';

export class HostTensor implements Tensor {
  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly data: Float32Array | Int32Array,
  ) {}
}

export function makeHostDevice(): Device {
  return {
    info: { kind: 'cpu', name: 'test host device', computeDType: 'f32' },
    upload(data: HostData, shape: readonly number[], dtype: DType): Tensor {
      const copy = data instanceof Int32Array ? data.slice() : Float32Array.from(data);
      return new HostTensor(shape, dtype, copy);
    },
    toHost(t: Tensor): Float32Array | Int32Array {
      if (!(t instanceof HostTensor)) throw new Error('not a host tensor');
      return t.data;
    },
    release(): void {},
    zeros(shape: readonly number[], dtype: DType): Tensor {
      const n = shape.reduce((x, y) => x * y, 1);
      return new HostTensor(shape, dtype, dtype === 'i32' ? new Int32Array(n) : new Float32Array(n));
    },
    write(dst: Tensor, data: HostData): void {
      const d = (dst as HostTensor).data;
      if (data.length !== d.length) throw new Error(`write: ${data.length} elements into ${d.length}`);
      d.set(data as ArrayLike<number>);
    },
    // Async scheduling's merge of device token ids (Device.mergeTokenIds).
    mergeTokenIds(ids: Tensor, prev: Tensor, rows: Tensor): Tensor {
      const a = (ids as HostTensor).data as Int32Array;
      const out = mergeTokenIdsInto(
        a,
        (prev as HostTensor).data as Int32Array,
        (rows as HostTensor).data as Int32Array,
        new Int32Array(a.length),
      );
      return new HostTensor([a.length], 'i32', out);
    },
    reshape(x: Tensor, shape: readonly number[]): Tensor {
      return new HostTensor(shape, x.dtype, (x as HostTensor).data);
    },
    sliceLast(x: Tensor, start: number, size: number): Tensor {
      const src = (x as HostTensor).data;
      const d = x.shape[x.shape.length - 1]!;
      const rows = src.length / d;
      const out = src instanceof Int32Array ? new Int32Array(rows * size) : new Float32Array(rows * size);
      for (let r = 0; r < rows; r++) out.set(src.subarray(r * d + start, r * d + start + size), r * size);
      return new HostTensor([...x.shape.slice(0, -1), size], x.dtype, out);
    },
    // The op set is not needed: the tests' models compute on the host.
  } as unknown as Device;
}
