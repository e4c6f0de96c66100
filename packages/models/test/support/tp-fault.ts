// Fault injection for tensor-parallel workers (the CPU test worker here, the GPU one in the server's
// gpu-tp scripts). The fault comes from FLASHSERVE_TEST_TP_FAULT="<kind>:<rank>:<when>" in the
// environment the threads inherit:
//   <when> a number n: at its n-th forward, rank <rank> exits the thread (code 7), throws, or spins
//                      forever (injectFault, around the rank's handlers);
//   <when> "start":    rank <rank>'s thread exits (code 7) right after it joined its group, before it
//                      reports ready (dyingAtStart, around the rank runtime): a rank dying at start-up.

import type { RankHandlers } from '@flashserve/core';
import type { RankRuntime } from '../../src/deepseek/tensor-parallel-model.js';

interface Fault {
  readonly kind: string;
  readonly rank: number;
  readonly when: string;
}

function fault(): Fault {
  const [kind = '', rank = '', when = ''] = (process.env.FLASHSERVE_TEST_TP_FAULT ?? '').split(':');
  return { kind, rank: Number(rank), when };
}

export function injectFault(handlers: RankHandlers, rank: number): RankHandlers {
  const f = fault();
  let forwards = 0;
  return {
    allocateKvCache: handlers.allocateKvCache,
    forward(batch) {
      if (rank === f.rank && ++forwards === Number(f.when)) {
        if (f.kind === 'exit') process.exit(7);
        if (f.kind === 'throw') throw new Error('injected fault');
        if (f.kind === 'spin') for (;;) {}
      }
      handlers.forward(batch);
    },
  };
}

/** `runtime`, or, under an "exit:<rank>:start" fault, the same runtime whose join exits that rank. */
export function dyingAtStart(runtime: RankRuntime): RankRuntime {
  const f = fault();
  if (f.kind !== 'exit' || f.when !== 'start') return runtime;
  return {
    ...runtime,
    join(o) {
      const joined = runtime.join(o);
      if (o.rank === f.rank) process.exit(7);
      return joined;
    },
  };
}
