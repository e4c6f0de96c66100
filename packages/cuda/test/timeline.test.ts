// The decode bench's kernel-timeline summary (scripts/bench/timeline.ts): stamps named after the
// captured launches, tagged stamps after the MLA addon's kernels, gaps summed by op.
import { describe, expect, it } from 'vitest';
import { formatTimeline, summarizeTimeline } from '../scripts/bench/timeline.js';
import type { KernelTimeline } from '../src/index.js';

/** A step of stamps: [µs, grid, tag]; `ops` are the host's noted launches (eager ones first). */
function step(stamps: [number, number, number][], ops: [string, number][]): KernelTimeline {
  return {
    times: Float64Array.from(stamps, (s) => s[0] * 1000),
    grids: Uint32Array.from(stamps, (s) => s[1]),
    blocks: Uint32Array.from(stamps, () => 256),
    tags: Uint32Array.from(stamps, (s) => s[2]),
    dropped: 0,
    ops: ops.map((o) => o[0]),
    opGrids: Uint32Array.from(ops, (o) => o[1]),
  };
}

// An eager run's launches, then the capture's: norm+linear, absorb, [mla decode], linear, final.
const noted: [string, number][] = [
  ['eager op', 7],
  ['addRmsNormLinear', 456],
  ['absorb', 523],
  ['linear', 256],
  ['addRmsNormLinear', 456],
  ['absorb', 523],
  ['linear', 256],
  ['lm head', 900],
];

describe('summarizeTimeline', () => {
  it('names our stamps from the capture and tagged ones from the tag, and sums gaps by op', () => {
    const a = step(
      [
        [0, 456, 0],
        [6, 523, 0],
        [9, 132, 1],
        [17, 256, 0],
        [22, 456, 0],
        [28, 523, 0],
        [31, 132, 1],
        [39, 256, 0],
        [44, 900, 0],
      ],
      noted,
    );
    const r = summarizeTimeline([a, a]);
    expect(r.stamps).toBe(9);
    expect(r.spanUs).toBe(44);
    const byOp = Object.fromEntries(r.rows.map((x) => [x.op, x]));
    expect(byOp['mla decode']).toMatchObject({ grid: 132, launches: 2, usPerStep: 16, usPerLaunch: 8 });
    expect(byOp.addRmsNormLinear).toMatchObject({ launches: 2, usPerStep: 12 });
    expect(byOp.absorb).toMatchObject({ launches: 2, usPerStep: 6 });
    expect(byOp.linear).toMatchObject({ launches: 2, usPerStep: 10 });
    expect(byOp['lm head']).toBeUndefined(); // the last stamp has no gap
    expect(r.rows[0]!.op).toBe('mla decode'); // the largest share first
    expect(r.sequence.map((s) => s.op).slice(0, 4)).toEqual([
      'addRmsNormLinear',
      'absorb',
      'mla decode',
      'linear',
    ]);
    expect(formatTimeline(r, 3)).toContain('mla decode (132)');
  });

  it('takes the median step and refuses steps whose stamps do not match the capture', () => {
    const ops: [string, number][] = [
      ['addRmsNormLinear', 456],
      ['absorb', 523],
      ['linear', 256],
    ];
    // Three stamps: the norm + linear at 0, the absorb at t1 (grid `grid`), the linear at t1 + 1.
    const threeStamps = (t1: number, grid = 523) =>
      step(
        [
          [0, 456, 0],
          [t1, grid, 0],
          [t1 + 1, 256, 0],
        ],
        ops,
      );
    const r = summarizeTimeline([threeStamps(5), threeStamps(9), threeStamps(7)]);
    expect(r.rows.find((x) => x.op === 'addRmsNormLinear')!.usPerStep).toBe(7);
    expect(r.sequence[0]!.gapUs).toBe(7);
    expect(() => summarizeTimeline([threeStamps(5), threeStamps(5, 522)])).toThrow(/stamp 1 has grid 522/);
    expect(() => summarizeTimeline([])).toThrow(/no steps/);
  });
});
