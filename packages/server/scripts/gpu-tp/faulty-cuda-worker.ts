// The CUDA tensor-parallel worker with the tests' injected fault (FLASHSERVE_TEST_TP_FAULT, see the
// models package's test/support/tp-fault.ts): gpu-tp.sh kills rank 1 mid-request with it, and
// tp-check.ts one at start-up (right after it joined NCCL).

import { runTensorParallelWorker } from '@flashserve/models';
import { dyingAtStart, injectFault } from '../../../models/test/support/tp-fault.js';
import { cudaRankRuntime } from '../../src/runtime/cuda-ranks.js';

runTensorParallelWorker(dyingAtStart(cudaRankRuntime()), injectFault);
