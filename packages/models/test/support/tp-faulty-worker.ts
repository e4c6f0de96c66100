// A CPU tensor-parallel worker entry with an injected fault (tp-fault.ts), for the tests.

import { cpuRankRuntime, runTensorParallelWorker } from '../../src/deepseek/tensor-parallel-model.js';
import { dyingAtStart, injectFault } from './tp-fault.js';

runTensorParallelWorker(dyingAtStart(cpuRankRuntime), injectFault);
