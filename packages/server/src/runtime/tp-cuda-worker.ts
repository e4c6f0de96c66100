// The module every CUDA tensor-parallel worker thread runs (and the supervisor thread, which watches
// them): rank r binds GPU r, joins the NCCL group, builds its shard, then runs rank 0's steps.
// Started by createTensorParallelModel (load-runtime.ts names it); importing it on the main thread
// does nothing.

import { runTensorParallelWorker } from '@flashserve/models';
import { cudaRankRuntime } from './cuda-ranks.js';

runTensorParallelWorker(cudaRankRuntime());
