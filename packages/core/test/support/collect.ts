// Runs requests on an engine and gathers their streamed chunks and final outputs.

import type { Engine } from '../../src/engine/engine.js';
import type { AddRequestInput, RequestOutput } from '../../src/engine/protocol.js';

export interface Collected {
  final: RequestOutput;
  chunks: RequestOutput[];
}

export async function collect(engine: Engine, req: AddRequestInput): Promise<Collected> {
  const handle = engine.addRequest(req);
  const chunks: RequestOutput[] = [];
  for await (const out of handle) chunks.push(out);
  return { final: await handle.done(), chunks };
}

/** Runs each request alone on a fresh engine from `make`, one after another. */
export async function runAlone(
  make: () => Engine,
  reqs: readonly AddRequestInput[],
): Promise<RequestOutput[]> {
  const outs: RequestOutput[] = [];
  for (const r of reqs) {
    const engine = make();
    outs.push((await collect(engine, r)).final);
    await engine.shutdown();
  }
  return outs;
}
