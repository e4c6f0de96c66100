// The CUDA tensor-parallel worker with the tests' injected fault (FLASHSERVE_TEST_TP_FAULT, see the
// models package's test/support/tp-fault.ts): gpu-tp.sh kills rank 1 mid-request with it. One more kind
// here, "exit:<rank>:start": the rank's thread exits right after it joined the group (its NCCL
// communicator made, GPU <rank> bound), before it reports ready: a rank dying during start-up.

import { type RankRuntime, runTensorParallelWorker } from '@flashserve/models';
import { injectFault } from '../../../models/test/support/tp-fault.js';
import { cudaRankRuntime } from '../../src/runtime/cuda-ranks.js';

const runtime = cudaRankRuntime();
const [kind, faultyRank, at] = (process.env.FLASHSERVE_TEST_TP_FAULT ?? '').split(':');
const dyingAtStart: RankRuntime = {
  ...runtime,
  join(o) {
    const joined = runtime.join(o);
    if (o.rank === Number(faultyRank)) process.exit(7);
    return joined;
  },
};
runTensorParallelWorker(kind === 'exit' && at === 'start' ? dyingAtStart : runtime, injectFault);
