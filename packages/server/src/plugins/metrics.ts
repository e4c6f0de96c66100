// Prometheus metrics under vLLM's names with our prefix (flashserve:...). Gauges and counters that the
// engine already keeps are read from engine.stats() at scrape time; latency histograms are observed
// from the engine's events, so every request is measured the same way whichever route it came by.
//
// Units: seconds for every latency, tokens for every token count. Each app owns its own registry
// (tests run several apps in one process).

import type { EngineStats, RequestOutput } from '@flashserve/core';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ServingEngine } from '../engine-port.js';

const LATENCY_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
];
const TOKEN_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly #engine: ServingEngine;
  readonly #lastTokenTime = new Map<string, number>();
  readonly #ttft: Histogram<string>;
  readonly #itl: Histogram<string>;
  readonly #e2e: Histogram<string>;
  readonly #promptTokens: Histogram<string>;
  readonly #generationTokens: Histogram<string>;
  readonly #success: Counter<'finished_reason'>;
  readonly #onOutput = (out: RequestOutput) => this.#observeOutput(out);
  readonly #onFinished = (out: RequestOutput) => this.#observeFinished(out);

  constructor(engine: ServingEngine, modelName: string) {
    this.#engine = engine;
    this.registry.setDefaultLabels({ model_name: modelName });
    const registers = [this.registry];
    let snapshot: EngineStats | undefined;
    // One stats() call per scrape: the first collector of a scrape refreshes it.
    const stats = (refresh: boolean) => {
      if (refresh || !snapshot) snapshot = engine.stats();
      return snapshot;
    };
    const gauge = (name: string, help: string, read: (s: EngineStats) => number, refresh = false) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(stats(refresh)));
        },
      });
    // Engine totals are monotonic, so exposing them as counters is truthful; prom-client counters
    // cannot be set, hence reset-and-add at scrape time.
    const counter = (name: string, help: string, read: (s: EngineStats) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read(stats(false)));
        },
      });
    gauge('flashserve:num_requests_running', 'Requests with a running sequence.', (s) => s.numRunning, true);
    gauge('flashserve:num_requests_waiting', 'Requests waiting to be scheduled.', (s) => s.numWaiting);
    gauge(
      'flashserve:kv_cache_usage_perc',
      'Fraction of KV cache blocks in use (0..1).',
      (s) => s.kvCacheUsage,
    );
    gauge('flashserve:num_free_blocks', 'Free KV cache blocks.', (s) => s.numFreeBlocks);
    counter(
      'flashserve:prefix_cache_queries',
      'Prompt tokens looked up in the prefix cache.',
      (s) => s.prefixCacheQueries,
    );
    counter(
      'flashserve:prefix_cache_hits',
      'Prompt tokens found in the prefix cache.',
      (s) => s.prefixCacheHits,
    );
    counter(
      'flashserve:num_preemptions_total',
      'Sequences preempted for lack of KV blocks.',
      (s) => s.numPreemptions,
    );
    counter('flashserve:prompt_tokens_total', 'Prompt tokens processed.', (s) => s.promptTokensTotal);
    counter('flashserve:generation_tokens_total', 'Tokens generated.', (s) => s.generationTokensTotal);
    this.#success = new Counter({
      name: 'flashserve:request_success_total',
      help: 'Finished choices by finish reason.',
      labelNames: ['finished_reason'],
      registers,
    });
    const histogram = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name, help, buckets, registers });
    this.#ttft = histogram(
      'flashserve:time_to_first_token_seconds',
      'Arrival to first token.',
      LATENCY_BUCKETS,
    );
    this.#itl = histogram(
      'flashserve:inter_token_latency_seconds',
      'Time between output steps of a request.',
      LATENCY_BUCKETS,
    );
    this.#e2e = histogram('flashserve:e2e_request_latency_seconds', 'Arrival to finish.', LATENCY_BUCKETS);
    this.#promptTokens = histogram(
      'flashserve:request_prompt_tokens',
      'Prompt length of finished requests.',
      TOKEN_BUCKETS,
    );
    this.#generationTokens = histogram(
      'flashserve:request_generation_tokens',
      'Tokens generated per finished request.',
      TOKEN_BUCKETS,
    );
    engine.events.on('output', this.#onOutput);
    engine.events.on('finished', this.#onFinished);
  }

  #observeOutput(out: RequestOutput): void {
    const now = Date.now();
    const last = this.#lastTokenTime.get(out.requestId);
    if (last === undefined) {
      if (out.metrics.firstTokenTime !== undefined) {
        this.#ttft.observe((out.metrics.firstTokenTime - out.metrics.arrivalTime) / 1000);
      }
    } else {
      this.#itl.observe((now - last) / 1000);
    }
    if (!out.finished) this.#lastTokenTime.set(out.requestId, now);
  }

  #observeFinished(out: RequestOutput): void {
    this.#lastTokenTime.delete(out.requestId);
    const end = out.metrics.finishedTime ?? Date.now();
    this.#e2e.observe((end - out.metrics.arrivalTime) / 1000);
    this.#promptTokens.observe(out.promptTokenIds.length);
    let generated = 0;
    for (const c of out.outputs) {
      generated += c.tokenIds.length;
      this.#success.inc({ finished_reason: c.finishReason ?? 'abort' });
    }
    this.#generationTokens.observe(generated);
  }

  /** Stops listening to the engine (the app is closing). */
  close(): void {
    this.#engine.events.off('output', this.#onOutput);
    this.#engine.events.off('finished', this.#onFinished);
    this.#lastTokenTime.clear();
  }
}
