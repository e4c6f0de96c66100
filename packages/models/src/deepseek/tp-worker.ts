// The module every tensor-parallel worker thread runs (and the supervisor thread, which watches them):
// rank r builds its shard of the model, says it is ready, then runs rank 0's steps until shutdown.
// Started by createTensorParallelModel; importing it on the main thread does nothing.

import { CpuDevice, CpuProcessGroup, runRankThreadEntry, serveSteps } from '@flashserve/core';
import {
  buildTensorParallelRank,
  type TensorParallelPayload,
  tensorParallelRankHandlers,
} from './tensor-parallel-model.js';

runRankThreadEntry<TensorParallelPayload>((ctx) => {
  const group = new CpuProcessGroup(ctx.group, ctx.rank);
  const { model } = buildTensorParallelRank(ctx.payload, group, new CpuDevice());
  ctx.ready();
  serveSteps(ctx, tensorParallelRankHandlers(model, group));
});
