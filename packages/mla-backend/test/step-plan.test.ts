// The step planner that lets the decode kernels run any step (mixed prefill chunks and decodes): on
// every machine, the kernel's causal rule applied to the planned pieces must give each query token
// exactly its request's causal window, and the runs must tile the step's tokens.
import type { CommonAttentionMetadata } from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { MAX_PIECE_LEN, maxPieceFromEnv, planStep } from '../src/internal/step-plan.js';

function step(reqs: { context: number; qLen: number }[], mb = 8): CommonAttentionMetadata {
  const qsl = [0];
  for (const r of reqs) qsl.push(qsl.at(-1)! + r.qLen);
  const T = qsl.at(-1)!;
  return {
    numReqs: reqs.length,
    numTokens: T,
    queryStartLoc: Int32Array.from(qsl),
    seqLens: Int32Array.from(reqs, (r) => r.context + r.qLen),
    numComputedTokens: Int32Array.from(reqs, (r) => r.context),
    positions: new Int32Array(T),
    slotMapping: new Int32Array(T),
    blockTables: Int32Array.from({ length: reqs.length * mb }, (_, i) => 1000 + i),
    maxBlocksPerReq: mb,
    blockSize: 64,
    maxQueryLen: Math.max(...reqs.map((r) => r.qLen)),
    maxSeqLen: Math.max(...reqs.map((r) => r.context + r.qLen)),
  };
}

/** For each token: [request, number of visible cache positions] under the kernel's rule. */
function kernelWindows(common: CommonAttentionMetadata, maxPiece: number): [number, number][] {
  const plan = planStep(common, maxPiece);
  const mb = common.maxBlocksPerReq;
  for (const run of plan.runs) {
    // What goes to the GPU: 16-byte aligned segments holding the run's pieces.
    expect(run.seqLensAt % 4).toBe(0);
    expect(run.tableAt % 4).toBe(0);
    expect([...plan.seqLensPadded.subarray(run.seqLensAt, run.seqLensAt + run.numPieces)]).toEqual([
      ...plan.pieceSeqLens.subarray(run.firstPiece, run.firstPiece + run.numPieces),
    ]);
    expect([...plan.blockTablesPadded.subarray(run.tableAt, run.tableAt + run.numPieces * mb)]).toEqual([
      ...plan.pieceBlockTables.subarray(run.firstPiece * mb, (run.firstPiece + run.numPieces) * mb),
    ]);
  }
  const out: [number, number][] = new Array(common.numTokens);
  let covered = 0;
  for (const run of plan.runs) {
    expect(run.sQ).toBeGreaterThanOrEqual(1);
    expect(run.sQ).toBeLessThanOrEqual(maxPiece);
    expect(run.tokenStart).toBe(covered); // runs tile the tokens in order
    for (let k = 0; k < run.numPieces; k++) {
      const p = run.firstPiece + k;
      const len = plan.pieceSeqLens[p]!;
      const r = plan.pieceReq[p]!;
      expect([...plan.pieceBlockTables.subarray(p * mb, (p + 1) * mb)]).toEqual([
        ...common.blockTables.subarray(r * mb, (r + 1) * mb),
      ]);
      for (let i = 0; i < run.sQ; i++) {
        const t = run.tokenStart + k * run.sQ + i;
        out[t] = [r, len - (run.sQ - 1 - i)];
      }
    }
    covered += run.numPieces * run.sQ;
  }
  expect(covered).toBe(common.numTokens);
  return out;
}

function requestWindows(common: CommonAttentionMetadata): [number, number][] {
  const out: [number, number][] = [];
  for (let r = 0; r < common.numReqs; r++) {
    const q0 = common.queryStartLoc[r]!;
    const qLen = common.queryStartLoc[r + 1]! - q0;
    for (let j = 0; j < qLen; j++) out.push([r, common.numComputedTokens[r]! + j + 1]);
  }
  return out;
}

describe('planStep', () => {
  it('a decode-only step is one launch of s_q = 1', () => {
    const plan = planStep(step([1, 70, 5].map((c) => ({ context: c, qLen: 1 }))));
    expect(plan.runs).toEqual([
      { firstPiece: 0, numPieces: 3, sQ: 1, tokenStart: 0, seqLensAt: 0, tableAt: 0 },
    ]);
    expect([...plan.pieceSeqLens]).toEqual([2, 71, 6]);
    expect([...plan.seqLensPadded]).toEqual([2, 71, 6]);
  });

  it("a decode-only step passes the step's own lengths and block tables on, uncopied", () => {
    const common = step([0, 63, 64, 4095].map((c) => ({ context: c, qLen: 1 })));
    const plan = planStep(common);
    expect(plan.seqLensPadded).toBe(common.seqLens);
    expect(plan.blockTablesPadded).toBe(common.blockTables);
    expect([...plan.pieceReq]).toEqual([0, 1, 2, 3]);
    expect(kernelWindows(common, MAX_PIECE_LEN)).toEqual(requestWindows(common));
    // One token short of decode-only (a request with two query tokens): the general path, copies.
    const mixed = step([
      { context: 5, qLen: 1 },
      { context: 9, qLen: 2 },
    ]);
    const general = planStep(mixed);
    expect(general.seqLensPadded).not.toBe(mixed.seqLens);
    expect(kernelWindows(mixed, MAX_PIECE_LEN)).toEqual(requestWindows(mixed));
  });

  it('mixed prefill chunks and decodes: pieces of at most 64, causal windows exact', () => {
    const common = step([
      { context: 10, qLen: 1 },
      { context: 3, qLen: 1 },
      { context: 0, qLen: 150 },
      { context: 64, qLen: 21 },
      { context: 0, qLen: 64 },
      { context: 7, qLen: 1 },
    ]);
    const plan = planStep(common);
    expect(plan.runs.map((r) => [r.sQ, r.numPieces])).toEqual([
      [1, 2],
      [64, 2],
      [22, 1],
      [21, 1],
      [64, 1],
      [1, 1],
    ]);
    expect(kernelWindows(common, MAX_PIECE_LEN)).toEqual(requestWindows(common));
  });

  it('random steps at every piece length give each token its request window', () => {
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + rand(6);
      const reqs = Array.from({ length: n }, () =>
        rand(2) === 0 ? { context: rand(300), qLen: 1 } : { context: rand(200), qLen: 1 + rand(200) },
      );
      const common = step(reqs);
      const maxPiece = 1 + rand(MAX_PIECE_LEN);
      expect(kernelWindows(common, maxPiece)).toEqual(requestWindows(common));
    }
  });

  it('rejects bad input and bad piece lengths', () => {
    const bad = { ...step([{ context: 0, qLen: 4 }]), seqLens: Int32Array.from([2]) };
    expect(() => planStep(bad)).toThrow(/4 query tokens but a sequence of 2/);
    expect(() => planStep(step([{ context: 0, qLen: 1 }]), 65)).toThrow(/maxPiece/);
    expect(maxPieceFromEnv({})).toBe(MAX_PIECE_LEN);
    expect(maxPieceFromEnv({ FLASHSERVE_MLA_MAX_PIECE: '4' })).toBe(4);
    expect(() => maxPieceFromEnv({ FLASHSERVE_MLA_MAX_PIECE: '0' })).toThrow(/FLASHSERVE_MLA_MAX_PIECE/);
  });
});
