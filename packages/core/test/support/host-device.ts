// A minimal Device for tests: tensors are host arrays, upload copies, toHost returns the data. Only
// the memory methods exist; the engine uses nothing else.

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
    // The op set is not needed: the tests' models compute on the host.
  } as unknown as Device;
}
