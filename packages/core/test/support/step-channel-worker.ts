// A worker for step-channel.test.ts: receives commands until shutdown and posts each one back as
// plain arrays, so the test can compare them with what it sent.

import { parentPort, workerData } from 'node:worker_threads';
import { ShmAbortFlag, type ShmGroupInit } from '../../src/distributed/shm-group.js';
import { type StepChannelInit, StepReceiver } from '../../src/distributed/step-channel.js';

const { channel, group, port } = workerData as {
  channel: StepChannelInit;
  group: ShmGroupInit;
  port: import('node:worker_threads').MessagePort;
};
const rx = new StepReceiver(channel, port, new ShmAbortFlag(group));
try {
  for (;;) {
    const cmd = rx.receive();
    if (cmd.kind === 'forward') {
      const b = cmd.batch;
      const md = b.attention;
      parentPort?.postMessage({
        kind: 'forward',
        tokenIds: Array.from(b.tokenIds),
        positions: Array.from(md.positions),
        slotMapping: Array.from(md.slotMapping),
        queryStartLoc: Array.from(md.queryStartLoc),
        seqLens: Array.from(md.seqLens),
        numComputedTokens: Array.from(md.numComputedTokens),
        blockTables: Array.from(md.blockTables),
        logitsIndices: Array.from(b.logitsIndices),
        scalars: [md.numReqs, md.numTokens, md.maxBlocksPerReq, md.blockSize, md.maxQueryLen, md.maxSeqLen],
        graphKey: b.graphKey ?? null,
      });
    } else parentPort?.postMessage(cmd);
    if (cmd.kind === 'shutdown') break;
  }
} catch (e) {
  parentPort?.postMessage({ kind: 'error', message: (e as Error).message });
}
port.close();
