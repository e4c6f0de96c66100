// The module every CPU tensor-parallel worker thread runs (and the supervisor thread, which watches
// them): rank r builds its shard of the model, says it is ready, then runs rank 0's steps until
// shutdown. Started by createTensorParallelModel; importing it on the main thread does nothing.
// (The CUDA worker module lives in @flashserve/server, which can import the CUDA packages.)

import { cpuRankRuntime, runTensorParallelWorker } from './tensor-parallel-model.js';

runTensorParallelWorker(cpuRankRuntime);
