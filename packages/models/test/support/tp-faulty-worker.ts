// A tensor-parallel worker entry with an injected fault, for tensor-parallel.test.ts. The fault comes
// from FLASHSERVE_TEST_TP_FAULT="<kind>:<rank>:<forward>" in the environment the threads inherit:
// at its <forward>-th forward, rank <rank> exits the thread (code 7), throws, or spins forever.

import { CpuDevice, CpuProcessGroup, runRankThreadEntry, serveSteps } from '@flashserve/core';
import {
  buildTensorParallelRank,
  type TensorParallelPayload,
  tensorParallelRankHandlers,
} from '../../src/deepseek/tensor-parallel-model.js';

runRankThreadEntry<TensorParallelPayload>((ctx) => {
  const [kind, rank, at] = (process.env.FLASHSERVE_TEST_TP_FAULT ?? '').split(':');
  const group = new CpuProcessGroup(ctx.group, ctx.rank);
  const { model } = buildTensorParallelRank(ctx.payload, group, new CpuDevice());
  const handlers = tensorParallelRankHandlers(model, group);
  let forwards = 0;
  ctx.ready();
  serveSteps(ctx, {
    allocateKvCache: handlers.allocateKvCache,
    forward(batch) {
      if (ctx.rank === Number(rank) && ++forwards === Number(at)) {
        if (kind === 'exit') process.exit(7);
        if (kind === 'throw') throw new Error('injected fault');
        if (kind === 'spin') for (;;) {}
      }
      handlers.forward(batch);
    },
  });
});
