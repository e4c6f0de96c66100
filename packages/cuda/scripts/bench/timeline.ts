// The decode bench's --timeline: where one graph step's time goes, kernel by kernel, as the GPU ran
// the chain (csrc/kernels/timeline.h). Each of our kernels stamps when its programmatic wait returns;
// the gap to the next stamp is that kernel's cost inside the chain, plus the time of any kernel launched
// between the two that does not stamp (cuBLAS's). The MLA addon's kernels stamp too once attached to
// the log (its timelineAttach), tagged; the host names ours from the launches it noted.
import type { KernelTimeline } from '../../src/index.js';

/** The MLA addon's kernels, by their stamps' tag (csrc/kernels/timeline.h). */
const TAGGED = ['', 'mla decode', 'mla combine + W_UV', 'mla combine'];

export interface TimelineRow {
  op: string;
  grid: number;
  /** Launches of this op per step. */
  launches: number;
  /** Median over steps of this op's summed gaps in one step, in µs. */
  usPerStep: number;
  /** usPerStep / launches. */
  usPerLaunch: number;
}

export interface TimelineReport {
  /** Stamps per step, and the span from the first stamp to the last, in µs (median over steps). */
  stamps: number;
  spanUs: number;
  rows: TimelineRow[];
  /** The chain's stamps of the step with the median span: op, grid, gap to the next stamp (µs). */
  sequence: { op: string; grid: number; gapUs: number }[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Names each step's stamps after the launches of the graph's capture (the last `stamps` launches noted)
 * and sums the gaps by op. Throws when the stamps' grids do not match the capture's launches.
 */
export function summarizeTimeline(steps: KernelTimeline[]): TimelineReport {
  if (steps.length === 0) throw new Error('timeline: no steps');
  const first = steps[0]!;
  const n = first.times.length;
  const last = steps[steps.length - 1]!;
  if (n < 2) throw new Error(`timeline: ${n} stamps a step`);
  // Our stamps are the capture's launches in order (the last ones noted); tagged ones name themselves.
  let ours = 0;
  for (let i = 0; i < n; i++) if (first.tags[i] === 0) ours++;
  const noted = last.ops.slice(last.ops.length - ours);
  const notedGrids = last.opGrids.slice(last.opGrids.length - ours);
  const ops: string[] = [];
  const opGrids: number[] = [];
  for (let i = 0, j = 0; i < n; i++) {
    const tag = first.tags[i]!;
    ops.push(tag === 0 ? noted[j]! : (TAGGED[tag] ?? `tag ${tag}`));
    opGrids.push(tag === 0 ? notedGrids[j++]! : first.grids[i]!);
  }
  for (const s of steps) {
    if (s.times.length !== n || s.dropped > 0)
      throw new Error(`timeline: a step has ${s.times.length} stamps (+${s.dropped} dropped), another ${n}`);
    for (let i = 0; i < n; i++)
      if (s.grids[i] !== opGrids[i])
        throw new Error(
          `timeline: stamp ${i} has grid ${s.grids[i]}, the captured launch ${ops[i]} ${opGrids[i]}`,
        );
  }
  const key = (i: number) => `${ops[i]}@${opGrids[i]}`;
  const perStep = new Map<string, number[]>();
  const launches = new Map<string, number>();
  for (let i = 0; i < n - 1; i++) launches.set(key(i), (launches.get(key(i)) ?? 0) + 1);
  for (const s of steps) {
    const sums = new Map<string, number>();
    for (let i = 0; i < n - 1; i++)
      sums.set(key(i), (sums.get(key(i)) ?? 0) + (s.times[i + 1]! - s.times[i]!) / 1000);
    for (const [k, v] of sums) perStep.set(k, [...(perStep.get(k) ?? []), v]);
  }
  const rows: TimelineRow[] = [...perStep.entries()].map(([k, v]) => {
    const at = k.lastIndexOf('@');
    const count = launches.get(k)!;
    const us = median(v);
    return {
      op: k.slice(0, at),
      grid: Number(k.slice(at + 1)),
      launches: count,
      usPerStep: us,
      usPerLaunch: us / count,
    };
  });
  rows.sort((a, b) => b.usPerStep - a.usPerStep);
  const spans = steps.map((s) => s.times[n - 1]! / 1000);
  const mid = median(spans);
  let at = 0;
  for (let i = 1; i < spans.length; i++) if (Math.abs(spans[i]! - mid) < Math.abs(spans[at]! - mid)) at = i;
  const pick = steps[at]!;
  const sequence = Array.from({ length: n }, (_, i) => ({
    op: ops[i]!,
    grid: opGrids[i]!,
    gapUs: i + 1 < n ? (pick.times[i + 1]! - pick.times[i]!) / 1000 : Number.NaN,
  }));
  return { stamps: n, spanUs: mid, rows, sequence };
}

/** The report as text: the table by op, then the first `firstLaunches` launches of the sequence. */
export function formatTimeline(r: TimelineReport, firstLaunches: number): string {
  const lines = [
    `timeline: ${r.stamps} stamped launches a step; first to last stamp ${r.spanUs.toFixed(1)} us (median step)`,
    'op (grid)                                              launches   us/step  us/launch   share',
  ];
  for (const row of r.rows)
    lines.push(
      `${`${row.op} (${row.grid})`.padEnd(54)} ${String(row.launches).padStart(8)} ${row.usPerStep.toFixed(1).padStart(9)} ${row.usPerLaunch.toFixed(2).padStart(10)} ${((100 * row.usPerStep) / r.spanUs).toFixed(1).padStart(6)}%`,
    );
  lines.push(`first ${firstLaunches} launches of the median step (gap to the next stamp, us):`);
  for (const s of r.sequence.slice(0, firstLaunches))
    lines.push(`  ${`${s.op} (${s.grid})`.padEnd(54)} ${Number.isNaN(s.gapUs) ? '-' : s.gapUs.toFixed(2)}`);
  return lines.join('\n');
}
