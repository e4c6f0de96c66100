// Shared by the two halves of the GPU end-to-end check (gpu-e2e.sh): the fixture's reference, the
// error measure and the result rows printed as the final table.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Expected {
  readonly prompt: number[];
  readonly logits: number[];
  readonly greedy: number[];
  readonly prompt2: number[];
  readonly logits2: number[];
  readonly greedy2: number[];
}

/** Issue 8's bar. */
export const GREEDY_MIN = 8;
export const LOGITS_TOL = 2e-2;

export interface Row {
  readonly check: string;
  readonly value: string;
  readonly limit: string;
  readonly ok: boolean;
  readonly note?: string;
}

export function loadExpected(fixtureDir: string): Expected {
  return JSON.parse(readFileSync(join(fixtureDir, 'expected.json'), 'utf8')) as Expected;
}

export function relL2(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) return Number.NaN;
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i]! - ref[i]!;
    num += d * d;
    den += ref[i]! * ref[i]!;
  }
  return Math.sqrt(num / (den || 1));
}

/** Leading tokens of `got` equal to `want`. */
export function samePrefix(got: readonly number[], want: readonly number[]): number {
  let n = 0;
  while (n < got.length && n < want.length && got[n] === want[n]) n++;
  return n;
}

export function logSoftmax(x: ArrayLike<number>): Float64Array {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]!);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i]! - m);
  const lse = m + Math.log(s);
  return Float64Array.from({ length: x.length }, (_, i) => x[i]! - lse);
}

/** Deterministic token ids for synthetic prompts (no reference: compared between runs). */
export function syntheticPrompt(len: number, seed: number, vocab: number): number[] {
  let s = seed >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(2 + (s % (vocab - 2))); // skip BOS 0 and EOS 1
  }
  return out;
}

export function printRows(title: string, rows: readonly Row[]): void {
  console.log(`\n${title}`);
  console.log(`${'check'.padEnd(72)} ${'value'.padStart(12)} ${'limit'.padStart(9)}  ok`);
  for (const r of rows) {
    console.log(
      `${r.check.padEnd(72).slice(0, 72)} ${r.value.padStart(12)} ${r.limit.padStart(9)}  ${r.ok ? 'ok' : 'FAIL'}`,
    );
    if (r.note) console.log(`    ${r.note}`);
  }
}

export const fmt = (x: number): string => (Number.isFinite(x) ? x.toExponential(2) : String(x));
