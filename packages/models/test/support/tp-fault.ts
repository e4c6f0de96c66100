// Fault injection for tensor-parallel workers (the CPU test worker here, the GPU one in the server's
// gpu-tp scripts). The fault comes from FLASHSERVE_TEST_TP_FAULT="<kind>:<rank>:<forward>" in the
// environment the threads inherit: at its <forward>-th forward, rank <rank> exits the thread (code 7),
// throws, or spins forever.

import type { RankHandlers } from '@flashserve/core';

export function injectFault(handlers: RankHandlers, rank: number): RankHandlers {
  const [kind, faultyRank, at] = (process.env.FLASHSERVE_TEST_TP_FAULT ?? '').split(':');
  let forwards = 0;
  return {
    allocateKvCache: handlers.allocateKvCache,
    forward(batch) {
      if (rank === Number(faultyRank) && ++forwards === Number(at)) {
        if (kind === 'exit') process.exit(7);
        if (kind === 'throw') throw new Error('injected fault');
        if (kind === 'spin') for (;;) {}
      }
      handlers.forward(batch);
    },
  };
}
