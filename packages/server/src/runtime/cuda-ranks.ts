// Tensor parallelism on GPUs: how each rank (a thread of this process, docs/tensor-parallel.md) gets
// its device and its process group. Rank r drives GPU r through its own CudaDevice (the addon's CUDA
// runtime is per thread) and joins an NCCL communicator; the shared-memory group carries only the
// abort flag. Rank 0 runs on the engine's thread and may bring the device the server already made.
//
// Failure: NCCL kernels wait for peers forever, so whoever sees a rank fail (the supervisor thread for
// a worker's exit or exception, rank 0 for its own) aborts the live ranks' communicators through the
// shared table (abortNcclGroup): streams blocked on the dead peer drain, and each rank sees the
// group's error where it checks next (rank 0: TensorParallelModel.checkStep after the step).

import { writeSync } from 'node:fs';
import { type DeepseekConfig, ShmAbortFlag } from '@flashserve/core';
import {
  abortNcclGroup,
  CudaDevice,
  createNcclGroupInit,
  GpuDummyWeightSource,
  type NcclGroupInit,
  NcclProcessGroup,
} from '@flashserve/cuda';
import { deepseekWeightManifest, type RankRuntime } from '@flashserve/models';
// Imported for its side effect: worker threads resolve "flashmla" and "cuda-mla" by name.
import '@flashserve/mla-backend';

/** What rank 0 prepares for every CUDA rank (structured-cloned to the workers). */
interface CudaRankPrepared {
  readonly nccl: NcclGroupInit;
  /** Benchmarks' dummy weights: each rank's CudaDevice fills empty uploads from this seed. */
  readonly dummySeed: number | undefined;
}

export interface CudaRankRuntimeOptions {
  /** --load-format dummy: weights are generated on each GPU from this seed (plus the rank). */
  readonly dummySeed?: number;
}

export function cudaRankRuntime(options: CudaRankRuntimeOptions = {}): RankRuntime {
  return {
    device: 'cuda',
    prepare(worldSize): CudaRankPrepared {
      return { nccl: createNcclGroupInit(worldSize), dummySeed: options.dummySeed };
    },
    join({ rank, worldSize, shm, prepared, device }) {
      const p = prepared as CudaRankPrepared;
      const own =
        device instanceof CudaDevice
          ? device
          : new CudaDevice({
              deviceIndex: rank,
              ...(p.dummySeed === undefined ? {} : { dummyEmptyUploadsSeed: p.dummySeed + rank }),
            });
      if (own.deviceIndex !== rank) {
        throw new Error(`rank ${rank} must drive GPU ${rank}, but its device is GPU ${own.deviceIndex}`);
      }
      const group = new NcclProcessGroup({
        device: own,
        rank,
        worldSize,
        init: p.nccl,
        abortFlag: new ShmAbortFlag(shm),
      });
      return { device: own, group };
    },
    onGroupBroken(prepared, rank) {
      // Straight to stderr: the main thread, whose event loop relays a worker's console, may be the
      // one blocked in the GPU until this returns.
      abortNcclGroup((prepared as CudaRankPrepared).nccl, rank, (m) => writeSync(2, `flashserve: ${m}\n`));
    },
    dummyWeights(config: DeepseekConfig) {
      return new GpuDummyWeightSource(deepseekWeightManifest(config));
    },
  };
}
