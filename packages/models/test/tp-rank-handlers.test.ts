// A worker rank runs each step the way rank 0 does: a batch that carries a graph key (the engine ran
// rank 0's forward inside device.graph under that key) goes through the rank's own graph of that key,
// so every rank captures and replays together; a batch without one runs eagerly.

import type { Device, ForwardBatch, Model, ProcessGroup, Tensor } from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { tensorParallelRankHandlers } from '../src/index.js';

function fakes() {
  const calls: string[] = [];
  const out = { shape: [1, 4], dtype: 'f32' } as unknown as Tensor;
  const device = {
    release: () => calls.push('release'),
    graph: (key: string, fn: () => Tensor) => {
      calls.push(`graph ${key}`);
      return fn();
    },
  } as unknown as Device;
  const model = {
    device,
    forward: () => {
      calls.push('forward');
      return out;
    },
    allocateKvCache: () => calls.push('allocate'),
  } as unknown as Model;
  const group = { barrier: () => calls.push('barrier') } as unknown as ProcessGroup;
  return { calls, handlers: tensorParallelRankHandlers(model, group) };
}

const batch = (graphKey?: string) =>
  ({
    tokenIds: new Int32Array(1),
    logitsIndices: new Int32Array(1),
    ...(graphKey ? { graphKey } : {}),
  }) as ForwardBatch;

describe('tensorParallelRankHandlers', () => {
  it('runs a keyed batch through the device graph of that key, an unkeyed one eagerly', () => {
    const { calls, handlers } = fakes();
    handlers.forward(batch('decode-4'));
    handlers.forward(batch());
    expect(calls).toEqual(['graph decode-4', 'forward', 'release', 'forward', 'release']);
  });

  it('allocates, then waits for every rank (a failed allocation shows on rank 0)', () => {
    const { calls, handlers } = fakes();
    handlers.allocateKvCache(8, 64);
    expect(calls).toEqual(['allocate', 'barrier']);
  });
});
