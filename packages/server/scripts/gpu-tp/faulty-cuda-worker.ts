// The CUDA tensor-parallel worker with the tests' injected fault (FLASHSERVE_TEST_TP_FAULT, see the
// models package's test/support/tp-fault.ts): gpu-tp.sh kills rank 1 mid-request with it.

import { runTensorParallelWorker } from '@flashserve/models';
import { injectFault } from '../../../models/test/support/tp-fault.js';
import { cudaRankRuntime } from '../../src/runtime/cuda-ranks.js';

runTensorParallelWorker(cudaRankRuntime(), injectFault);
