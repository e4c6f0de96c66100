// The step channel with a real worker thread: commands arrive in order with every array intact,
// including steps larger than the shared buffer (which grows and is handed over once), and an idle
// worker leaves its wait when the group is aborted.

import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { bundleWorker } from '../../../../test-support/bundle-worker.js';
import type { CommonAttentionMetadata } from '../attention/common-metadata.js';
import type { ForwardBatch } from '../engine/model.js';
import { createShmGroupInit, ShmAbortFlag } from './shm-group.js';
import { createStepChannelInit, StepSender } from './step-channel.js';

let entry: URL;
beforeAll(() => {
  entry = bundleWorker(fileURLToPath(new URL('../../test/support/step-channel-worker.ts', import.meta.url)));
});

function batch(numReqs: number, perReq: number, seed: number, graphKey?: string): ForwardBatch {
  const T = numReqs * perReq;
  const seq = (n: number, f: (i: number) => number) => Int32Array.from({ length: n }, (_, i) => f(i));
  const maxBlocksPerReq = 3;
  const attention: CommonAttentionMetadata = {
    numReqs,
    numTokens: T,
    queryStartLoc: seq(numReqs + 1, (i) => i * perReq),
    seqLens: seq(numReqs, (i) => 10 + i + seed),
    numComputedTokens: seq(numReqs, (i) => 10 + i + seed - perReq),
    positions: seq(T, (i) => i + seed),
    slotMapping: seq(T, (i) => 3 * i + seed),
    blockTables: seq(numReqs * maxBlocksPerReq, (i) => i * 7 + seed),
    maxBlocksPerReq,
    blockSize: 16,
    maxQueryLen: perReq,
    maxSeqLen: 10 + numReqs + seed,
  };
  return {
    tokenIds: seq(T, (i) => (i * 31 + seed) % 1000),
    attention,
    logitsIndices: seq(numReqs, (i) => (i + 1) * perReq - 1),
    ...(graphKey === undefined ? {} : { graphKey }),
  };
}

function plain(b: ForwardBatch) {
  const md = b.attention;
  return {
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
  };
}

function start(initialWords: number) {
  const group = createShmGroupInit(2);
  const channel = createStepChannelInit(initialWords);
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(entry, { workerData: { channel, group, port: port2 }, transferList: [port2] });
  const received: unknown[] = [];
  worker.on('message', (m) => received.push(m));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return { sender: new StepSender(channel, [port1]), group, received, exited, port1 };
}

async function until(cond: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > 10_000) throw new Error('timed out waiting for the worker');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('step channel', () => {
  it('delivers every command in order (graph keys included), growing the buffer for large steps', async () => {
    const { sender, received, exited, port1 } = start(32);
    // Each send waits for the worker's echo, as rank 0's collectives make it wait in production.
    const sent: unknown[] = [];
    const send = async (cmd: Parameters<StepSender['send']>[0], expect: unknown) => {
      sender.send(cmd);
      sent.push(expect);
      await until(() => received.length === sent.length);
    };
    await send(
      { kind: 'allocate', numBlocks: 12, blockSize: 16 },
      { kind: 'allocate', numBlocks: 12, blockSize: 16 },
    );
    // A batch run through a decode graph carries its key; the others have none.
    for (const [reqs, per, seed, key] of [
      [2, 3, 1, undefined],
      [8, 40, 2, undefined],
      [1, 1, 3, 'decode-1'],
      [64, 50, 4, undefined],
      [3, 2, 5, 'decode-4'],
    ] as const) {
      const b = batch(reqs, per, seed, key);
      await send({ kind: 'forward', batch: b }, plain(b));
    }
    await send({ kind: 'shutdown' }, { kind: 'shutdown' });
    expect(received).toEqual(sent);
    await exited;
    port1.close();
  });

  it('an idle worker leaves its wait when the group is aborted', async () => {
    const { group, received, exited, port1 } = start(64);
    new ShmAbortFlag(group).raise('worker rank 3 failed: boom', 'worker-failed');
    await until(() => received.length === 1);
    expect(received[0]).toEqual({
      kind: 'error',
      message: 'a tensor-parallel worker failed: worker rank 3 failed: boom',
    });
    await exited;
    port1.close();
  });
});
