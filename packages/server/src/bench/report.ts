// The benchmark's result: the figures `vllm bench serve` reports, as a table and as JSON.

import type { RequestTiming } from './client.js';
import { type Summary, summarize } from './stats.js';

export interface BenchResult {
  readonly completed: number;
  readonly failed: number;
  readonly durationS: number;
  readonly totalInputTokens: number;
  readonly totalOutputTokens: number;
  readonly requestThroughput: number;
  readonly inputThroughput: number;
  readonly outputThroughput: number;
  readonly totalTokenThroughput: number;
  readonly maxConcurrency: number | null;
  readonly requestRate: number | null;
  /** Milliseconds. */
  readonly ttftMs: Summary;
  /** Time per output token after the first, per request, in milliseconds. */
  readonly tpotMs: Summary;
  /** Gaps between streamed chunks, in milliseconds. */
  readonly itlMs: Summary;
  readonly e2elMs: Summary;
  readonly errors: readonly string[];
}

export function buildResult(
  timings: readonly RequestTiming[],
  durationMs: number,
  settings: { maxConcurrency: number | undefined; requestRate: number },
): BenchResult {
  const ok = timings.filter((t) => t.ok);
  const durationS = durationMs / 1000;
  const input = ok.reduce((a, t) => a + t.promptTokens, 0);
  const output = ok.reduce((a, t) => a + t.outputTokens, 0);
  const tpot = ok
    .filter((t) => t.outputTokens > 1)
    .map((t) => (t.latencyMs - t.ttftMs) / (t.outputTokens - 1));
  return {
    completed: ok.length,
    failed: timings.length - ok.length,
    durationS,
    totalInputTokens: input,
    totalOutputTokens: output,
    requestThroughput: ok.length / durationS,
    inputThroughput: input / durationS,
    outputThroughput: output / durationS,
    totalTokenThroughput: (input + output) / durationS,
    maxConcurrency: settings.maxConcurrency ?? null,
    requestRate: Number.isFinite(settings.requestRate) ? settings.requestRate : null,
    ttftMs: summarize(ok.map((t) => t.ttftMs)),
    tpotMs: summarize(tpot),
    itlMs: summarize(ok.flatMap((t) => t.itlMs)),
    e2elMs: summarize(ok.map((t) => t.latencyMs)),
    errors: [...new Set(timings.filter((t) => !t.ok).map((t) => t.error ?? 'unknown'))].slice(0, 10),
  };
}

const f2 = (x: number) => x.toFixed(2);

/** The result as a Markdown table (readable in a terminal, pastes into a README). */
export function formatResult(r: BenchResult): string[] {
  const rows: [string, string][] = [
    ['Successful requests', String(r.completed)],
    ['Failed requests', String(r.failed)],
    ['Max concurrency', r.maxConcurrency === null ? 'unbounded' : String(r.maxConcurrency)],
    ['Request rate (req/s)', r.requestRate === null ? 'inf' : f2(r.requestRate)],
    ['Benchmark duration (s)', f2(r.durationS)],
    ['Total input tokens', String(r.totalInputTokens)],
    ['Total generated tokens', String(r.totalOutputTokens)],
    ['Request throughput (req/s)', f2(r.requestThroughput)],
    ['Input token throughput (tok/s)', f2(r.inputThroughput)],
    ['Output token throughput (tok/s)', f2(r.outputThroughput)],
    ['Total token throughput (tok/s)', f2(r.totalTokenThroughput)],
  ];
  const lines = ['| metric | value |', '| --- | ---: |', ...rows.map(([k, v]) => `| ${k} | ${v} |`), ''];
  lines.push('| latency (ms) | mean | p50 | p90 | p99 |', '| --- | ---: | ---: | ---: | ---: |');
  const lat = (name: string, s: Summary) =>
    `| ${name} | ${f2(s.mean)} | ${f2(s.p50)} | ${f2(s.p90)} | ${f2(s.p99)} |`;
  lines.push(lat('TTFT', r.ttftMs), lat('TPOT', r.tpotMs), lat('ITL', r.itlMs), lat('E2E latency', r.e2elMs));
  if (r.errors.length > 0) lines.push('', 'errors:', ...r.errors.map((e) => `  ${e}`));
  return lines;
}
