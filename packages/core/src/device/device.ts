// The Device contract: every numeric operation a model needs, so that model code is written once and
// runs on the CPU (float32, exact reference) or on a GPU (bf16 storage, fp32 accumulation).
//
// Invariants:
// - Tensors are opaque handles owned by the device that made them; shapes are row-major.
// - Operations are enqueued in order; only `toHost` waits for the result. A CUDA device may run them
//   asynchronously on one stream (and capture them into graphs), so model code never reads tensor
//   contents except through `toHost`.
// - Every operation returns a new tensor; `release` gives a tensor's memory back early (the CPU
//   device leaves it to the garbage collector).
//
// NOTE: this file is the one place the op set is defined. A device that cannot do an op throws an
// error naming the op; it never silently falls back.

export type DType = 'f32' | 'bf16' | 'f16' | 'i32';
export type DeviceKind = 'cpu' | 'cuda';

export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** Host data accepted by `upload`. bf16/f16 come as raw 16-bit words. */
export type HostData = Float32Array | Int32Array | Uint16Array;

export interface DeviceInfo {
  readonly kind: DeviceKind;
  /** Human-readable, e.g. "cpu (float32)" or "NVIDIA H100 80GB HBM3 (sm_90)". */
  readonly name: string;
  /** CUDA compute capability as major*10+minor (90 for Hopper); undefined on the CPU. */
  readonly computeCapability?: number;
  /** Element type activations and weights are stored in. */
  readonly computeDType: DType;
}

export interface Device {
  readonly info: DeviceInfo;

  // --- memory ---------------------------------------------------------------------------------
  /** Copies host data to a new tensor of `shape`; `dtype` says how `data` is encoded. Converts to the
   * device's storage type for floating-point data (f32/bf16/f16 -> computeDType). */
  upload(data: HostData, shape: readonly number[], dtype: DType): Tensor;
  /** Waits for pending work and returns the contents: Int32Array for i32, Float32Array otherwise. */
  toHost(t: Tensor): Float32Array | Int32Array;
  /** Gives the tensor's memory back; using it afterwards is an error. */
  release(t: Tensor): void;

  // --- operations: the op set is owned by the models work (issue 5) and grows here -------------
}
