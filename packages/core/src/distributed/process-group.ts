// The ProcessGroup contract: the collectives tensor parallelism needs, over the ranks of one model.
// Two implementations exist: `CpuProcessGroup` (shared memory between the worker threads of one
// process; every machine, CI included) and `NcclProcessGroup` in @flashserve/cuda (NCCL over GPUs).
//
// Rules every caller keeps:
// - COLLECTIVE methods (allReduceSum, allGather, broadcast, barrier) must be called by every rank, in
//   the same order, with the same element counts. A rank that skips one, or calls them in another
//   order, makes the group wait until its timeout and then fail on every rank.
// - Results are bitwise identical on every rank (one rank computes each sum, in rank order), so
//   replicated computations after a collective (norms, the MoE router) stay identical everywhere.
// - A failure on any rank (an exception in its forward, a worker that exits, a collective that times
//   out) breaks the whole group: pending and later collectives on every rank throw
//   FS_ERR_DISTRIBUTED_* errors that name the cause. A broken group is never reused; the owner
//   builds a new one (new workers) or exits.
// - Tensor forms follow the Device rule: they return a new tensor and never modify their input.
//   Host forms work in place on the given array.

import type { Tensor } from '../device/device.js';

export type ProcessGroupBackend = 'cpu-shm' | 'nccl';

export interface ProcessGroup {
  readonly backend: ProcessGroupBackend;
  /** 0 .. worldSize-1; rank 0 is the engine's own thread. */
  readonly rank: number;
  readonly worldSize: number;

  /** COLLECTIVE. Elementwise sum over ranks: returns a new tensor of x's shape. */
  allReduceSum(x: Tensor): Tensor;
  /** COLLECTIVE. Host form: sums in place and returns `x`. */
  allReduceSum(x: Float32Array): Float32Array;

  /** COLLECTIVE. Concatenates every rank's x, rank-major along a new leading dim:
   * x [...s] -> [worldSize, ...s]. Every rank's x has the same shape. */
  allGather(x: Tensor): Tensor;
  /** COLLECTIVE. Host form: returns a new array of worldSize * x.length elements, rank-major. */
  allGather(x: Float32Array): Float32Array;

  /** COLLECTIVE. Returns a new tensor holding `root`'s x on every rank (same shape everywhere). */
  broadcast(x: Tensor, root: number): Tensor;
  /** COLLECTIVE. Host form: overwrites x with root's contents (in place) and returns it. */
  broadcast(x: Float32Array | Int32Array, root: number): Float32Array | Int32Array;

  /** COLLECTIVE. Returns once every rank has called it. */
  barrier(): void;

  /** Not collective: why the group is unusable, or undefined while it is healthy. */
  readonly brokenReason: string | undefined;
  /** Not collective: breaks the group on every rank (pending collectives throw promptly) with a
   * reason that names the cause. The first reason wins; later calls keep it. */
  abort(reason: string): void;
  /** Not collective: frees this rank's resources (an NCCL communicator); the group is unusable after. */
  destroy(): void;
}
