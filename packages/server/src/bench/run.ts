// `flashserve bench serve`: sends the prompts at the configured rate (Poisson arrivals) under an
// optional concurrency cap, streams every answer, and reports throughput and latency.

import { writeFileSync } from 'node:fs';
import { SeededRandom } from '../embedded-model/random.js';
import { benchServerUnreachable } from '../errors.js';
import { type RequestTarget, type RequestTiming, timedRequest } from './client.js';
import type { BenchConfig } from './config.js';
import { type BenchPrompt, jsonlPrompts, randomPrompts } from './dataset.js';
import { type BenchResult, buildResult, formatResult } from './report.js';

async function firstModel(baseUrl: string, apiKey: string | undefined): Promise<string> {
  const url = new URL('/v1/models', baseUrl).toString();
  let res: Response;
  try {
    res = await fetch(url, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
  } catch (err) {
    throw benchServerUnreachable(url, (err as Error).message);
  }
  if (!res.ok) throw benchServerUnreachable(url, `HTTP ${res.status}`);
  const list = (await res.json()) as { data?: { id?: string }[] };
  const id = list.data?.[0]?.id;
  if (!id) throw benchServerUnreachable(url, 'the server lists no model');
  return id;
}

function prompts(config: BenchConfig): BenchPrompt[] {
  if (config.datasetName === 'jsonl') {
    return jsonlPrompts(config.datasetPath ?? '', config.numPrompts, config.randomOutputLen);
  }
  return randomPrompts({
    count: config.numPrompts,
    inputLen: config.randomInputLen,
    outputLen: config.randomOutputLen,
    rangeRatio: config.randomRangeRatio,
    seed: config.seed,
    asText: config.endpoint.endsWith('/chat/completions'),
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs the benchmark; prints with `print` and returns the result. */
export async function runBenchServe(
  config: BenchConfig,
  print: (line: string) => void,
): Promise<BenchResult> {
  const model = config.model ?? (await firstModel(config.baseUrl, config.apiKey));
  const target: RequestTarget = {
    url: new URL(config.endpoint, config.baseUrl).toString(),
    chat: config.endpoint.endsWith('/chat/completions'),
    model,
    apiKey: config.apiKey,
    ignoreEos: config.ignoreEos,
    timeoutMs: config.requestTimeout * 1000,
  };
  const list = prompts(config);
  print(
    `bench serve: ${list.length} prompts -> ${target.url} (model ${model}), ` +
      `rate ${Number.isFinite(config.requestRate) ? config.requestRate : 'inf'} req/s, ` +
      `max concurrency ${config.maxConcurrency ?? 'unbounded'}`,
  );

  const rng = new SeededRandom(config.seed + 1);
  const limit = config.maxConcurrency ?? Number.POSITIVE_INFINITY;
  let inFlight = 0;
  const waiters: (() => void)[] = [];
  const acquire = async () => {
    while (inFlight >= limit) await new Promise<void>((resolve) => waiters.push(resolve));
    inFlight++;
  };
  const release = () => {
    inFlight--;
    waiters.shift()?.();
  };

  const start = performance.now();
  const running: Promise<RequestTiming>[] = [];
  for (const prompt of list) {
    await acquire();
    running.push(timedRequest(target, prompt).finally(release));
    if (Number.isFinite(config.requestRate)) {
      // Exponential gaps give a Poisson process of the requested rate.
      await sleep((-Math.log(1 - rng.next()) / config.requestRate) * 1000);
    }
  }
  const timings = await Promise.all(running);
  const result = buildResult(timings, performance.now() - start, {
    maxConcurrency: config.maxConcurrency,
    requestRate: config.requestRate,
  });
  for (const line of formatResult(result)) print(line);
  if (config.resultFile !== undefined) {
    writeFileSync(
      config.resultFile,
      `${JSON.stringify({ model, endpoint: target.url, ...result }, null, 2)}\n`,
    );
    print(`result written to ${config.resultFile}`);
  }
  return result;
}
