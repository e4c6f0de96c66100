// The engine loop: continuous batching over a Model.
//
// One step: abort what was asked to stop -> schedule (token budget, chunked prefill, preemption) ->
// build the flattened batch once -> model.forward (a decode-only step that fits
// EngineOptions.decodeGraphBatchSizes is padded to a ladder size and run through Device.graph) ->
// sample (the host sampler reads the logits back) -> append tokens, check stops, detokenize -> emit
// outputs. Steps run back to back through setImmediate while there is work, so I/O callbacks (new
// requests, disconnects) run between any two steps; the loop goes idle when nothing is queued or
// running.
//
// Async scheduling (EngineOptions.asyncScheduling, vLLM's --async-scheduling) pipelines that by one
// step: a step's sampling is queued on the device and the step is left in flight; the next iteration
// first launches the step that continues it (every running request decodes the token being sampled,
// read on the device through ForwardBatch.prevTokenIds), then waits for the step in flight and does
// its host work (append, stops, detokenize, emit) while the device runs the new one. Anything else to
// schedule (a waiting request, a chunked prefill, preemption, a fork) ends the pipeline: the step in
// flight is finished first and the scheduler runs as above.
//
// Invariants:
// - Every request that ends, however it ends (stop, length, abort, model failure, shutdown), frees
//   its blocks in finishRequest/finishChoice before its final output is emitted.
// - With a step in flight, a sequence's numComputedTokens counts the tokens whose KV was computed and
//   whose ids are on the host; the continuation's own token is counted once the host has it, so block
//   hashes only ever cover known tokens. A request that ends while a step that computes it is in flight
//   frees its blocks at once: a later step that reuses them is queued behind it on the device.
// - Outputs are emitted after a step's state is consistent. Listeners may call addRequest and abort
//   re-entrantly: an abort raised during a step is applied at the step's end.

import { EventEmitter } from 'eventemitter3';
import type { Tensor } from '../device/device.js';
import {
  engineModelFailed,
  engineOverloaded,
  engineShutDown,
  engineStepFailed,
  requestDuplicateId,
  requestExceedsKvCache,
} from '../errors.js';
import { KvCacheManager } from '../kv-cache/kv-cache-manager.js';
import { HostSampler, MAX_LOGPROBS } from '../sampling/host-sampler.js';
import { Rng, randomSeed } from '../sampling/rng.js';
import type { PendingSample, SampledToken, Sampler, SamplingRow } from '../sampling/sampler.js';
import type { SchedulerOutput } from '../scheduler/output.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { BatchBuilder, decodeGraphSize } from './batch-builder.js';
import { Choice } from './choice.js';
import { createDetokenizer, type Detokenizer } from './detokenizer.js';
import { resolveKvCacheBlocks } from './engine-options.js';
import type { ForwardBatch, Model } from './model.js';
import { readPromptLogprobs } from './prompt-logprobs.js';
import type {
  AddRequestInput,
  EngineEvents,
  EngineOptions,
  EngineStats,
  FinishReason,
  RequestHandle,
  TokenLogprob,
} from './protocol.js';
import { RequestState } from './request.js';
import { RequestStream } from './request-stream.js';
import { StopStringMatcher } from './stop-checker.js';
import { appendTextAndCheckStop } from './stop-condition.js';
import type { Tokenizer } from './tokenizer.js';
import { validateRequest } from './validate-request.js';

const NO_COUNTS: ReadonlyMap<number, number> = new Map();

/** Requests whose first sample forks their choices: rows[firstRow..firstRow+n) belong to them. */
interface Fork {
  readonly parent: Choice;
  readonly firstRow: number;
}

/** A step whose sampling is queued on the device and not read back yet (async scheduling). */
interface InflightStep {
  readonly out: SchedulerOutput<Choice>;
  /** Sampling rows: row r's token is written to the sampled-ids buffer at r. */
  readonly rows: readonly SamplingRow[];
  readonly forks: readonly Fork[];
  readonly pending: PendingSample;
  readonly t0: number;
  readonly modelMs: number;
  readonly graphBatchSize: number | undefined;
}

export class Engine {
  readonly events = new EventEmitter<EngineEvents>();
  readonly model: Model;
  readonly tokenizer: Tokenizer | undefined;
  readonly blockSize: number;
  readonly maxModelLen: number;
  readonly #opts: EngineOptions;
  readonly #kv: KvCacheManager;
  readonly #scheduler: Scheduler<Choice>;
  readonly #builder: BatchBuilder;
  readonly #sampler: Sampler;
  readonly #eosTokenIds: readonly number[];
  readonly #requests = new Map<string, RequestState>();
  readonly #pendingAborts: string[] = [];
  readonly #idleWaiters: (() => void)[] = [];
  #inStep = false;
  #loopScheduled = false;
  #accepting = true;
  #nextRequestId = 0;
  #promptTokensTotal = 0;
  #generationTokensTotal = 0;
  /** Decode-graph ladder (ascending); empty when every step runs eagerly. */
  readonly #graphSizes: readonly number[];
  /** Block-table width of padded decode batches: the most blocks a request can hold. */
  readonly #graphTableWidth: number;
  /** Sizes whose graph failed to capture or replay: those steps run eagerly from then on. */
  readonly #graphFailed = new Set<number>();
  /** Whether async scheduling is on: asked for, and the model, device and sampler support it. */
  readonly #async: boolean;
  /** i32 [maxNumSeqs] on the device: the last async sampling's ids (the next step's input). */
  #sampledIds: Tensor | undefined;
  /** -1 x maxNumSeqs: "no device token" rows for decode-graph steps that have none. */
  readonly #noDeviceRows: Int32Array;
  #inflight: InflightStep | undefined;

  constructor(opts: EngineOptions) {
    this.#opts = opts;
    this.model = opts.model;
    this.tokenizer = opts.tokenizer;
    this.blockSize = opts.blockSize;
    this.maxModelLen = opts.maxModelLen;
    const totalBlocks = resolveKvCacheBlocks(opts);
    this.#kv = new KvCacheManager({
      numBlocks: totalBlocks,
      blockSize: opts.blockSize,
      enablePrefixCaching: opts.enablePrefixCaching ?? true,
      extraKey: opts.model.info.name,
    });
    this.#scheduler = new Scheduler<Choice>(this.#kv, {
      maxNumSeqs: opts.maxNumSeqs,
      maxNumBatchedTokens: opts.maxNumBatchedTokens,
    });
    this.#builder = new BatchBuilder(opts.blockSize, opts.maxNumBatchedTokens, opts.maxNumSeqs);
    this.#sampler = opts.sampler ?? new HostSampler();
    this.#eosTokenIds = opts.tokenizer?.eosTokenIds ?? [];
    this.#graphSizes =
      opts.model.device.graph === undefined
        ? []
        : [...(opts.decodeGraphBatchSizes ?? [])]
            .filter((b) => Number.isInteger(b) && b > 0)
            .sort((a, b) => a - b);
    this.#graphTableWidth = Math.ceil(opts.maxModelLen / opts.blockSize);
    this.#async =
      opts.asyncScheduling === true &&
      opts.model.readsDeviceTokenIds === true &&
      opts.model.device.mergeTokenIds !== undefined &&
      this.#sampler.sampleAsync !== undefined;
    this.#noDeviceRows = new Int32Array(this.#async ? opts.maxNumSeqs : 0).fill(-1);
    opts.model.allocateKvCache(totalBlocks, opts.blockSize);
  }

  /** Whether async scheduling is in effect (asked for, and supported by the model, device and sampler). */
  get asyncScheduling(): boolean {
    return this.#async;
  }

  /** Queues a request. Throws a FlashserveError (400) for a bad request, 503 when the waiting queue is
   * full or the engine is shutting down. */
  addRequest(req: AddRequestInput): RequestHandle {
    if (!this.#accepting) throw engineShutDown();
    const p = req.params;
    validateRequest(req.promptTokenIds, p, {
      vocabSize: this.model.info.vocabSize,
      maxModelLen: this.maxModelLen,
      maxNumSeqs: this.#opts.maxNumSeqs,
      hasTokenizer: this.tokenizer !== undefined,
      maxLogprobs: this.#opts.maxLogprobs ?? MAX_LOGPROBS,
    });
    const needed = this.#blocksAtLongest(req.promptTokenIds.length, p.maxTokens, p.n);
    if (needed > this.#kv.numUsableBlocks) throw requestExceedsKvCache(needed, this.#kv.numUsableBlocks);
    const limit = this.#opts.maxWaitingRequests;
    if (limit !== undefined && this.#scheduler.numWaiting >= limit) throw engineOverloaded(limit);
    const requestId = req.requestId ?? `req-${++this.#nextRequestId}`;
    if (this.#requests.has(requestId)) throw requestDuplicateId(requestId);

    const seed = p.seed ?? randomSeed();
    const rngs: Rng[] = [];
    for (let i = 0; i < p.n; i++) rngs.push(new Rng(seed, i));
    const bans = [...p.stopTokenIds, ...(p.ignoreEos ? [] : this.#eosTokenIds)];
    const promptTokenIds = Array.from(req.promptTokenIds);
    const state = new RequestState({
      requestId,
      promptTokenIds,
      params: {
        ...p,
        stop: [...p.stop],
        stopTokenIds: [...p.stopTokenIds],
        ...(p.logitBias === undefined ? {} : { logitBias: new Map(p.logitBias) }),
      },
      arrivalTime: req.arrivalTime ?? Date.now(),
      rngs,
      minTokensBans: bans,
      stopMatcher: new StopStringMatcher(p.stop),
      stream: new RequestStream(requestId, () => this.abort(requestId)),
    });
    const first = new Choice(state, 0, promptTokenIds.slice(), rngs[0]!, this.#detokenizer(state), p.n);
    first.wantsPromptLogits = p.promptLogprobs !== undefined;
    state.choices.push(first);
    this.#requests.set(requestId, state);
    this.#scheduler.add(first);
    this.#kick();
    return state.stream;
  }

  /** Stops a request; its blocks are freed now, or at the end of the current step when called from
   * inside an event listener. Unknown or finished ids are ignored. */
  abort(requestId: string): void {
    const req = this.#requests.get(requestId);
    if (req === undefined || req.finished) return;
    if (this.#inStep) {
      this.#pendingAborts.push(requestId);
      return;
    }
    this.#finishRequest(req, 'abort');
  }

  stats(): EngineStats {
    let numRunning = 0;
    for (const req of this.#requests.values()) {
      if (req.choices.some((c) => c.status === 'running')) numRunning++;
    }
    const c = this.#kv.counters;
    return {
      numRunning,
      numWaiting: this.#requests.size - numRunning,
      numFreeBlocks: this.#kv.numFreeBlocks,
      numTotalBlocks: this.#kv.numUsableBlocks,
      kvCacheUsage: this.#kv.usage,
      prefixCacheQueries: c.prefixCacheQueries,
      prefixCacheHits: c.prefixCacheHits,
      numPreemptions: this.#scheduler.numPreemptions,
      promptTokensTotal: this.#promptTokensTotal,
      generationTokensTotal: this.#generationTokensTotal,
    };
  }

  /** Stops accepting requests, lets running ones finish for up to drainMs, aborts the rest. */
  async shutdown(opts: { drainMs?: number } = {}): Promise<void> {
    this.#accepting = false;
    const drainMs = opts.drainMs ?? 0;
    if (drainMs > 0 && this.#requests.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#idleWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, drainMs);
        }),
      ]);
      clearTimeout(timer);
    }
    for (const id of [...this.#requests.keys()]) this.abort(id);
    while (this.#loopScheduled || this.#inStep || this.#inflight !== undefined)
      await new Promise<void>((resolve) => setImmediate(resolve));
  }

  // --- the loop -----------------------------------------------------------------------------------

  #kick(): void {
    if (this.#loopScheduled || this.#inStep) return;
    if (this.#scheduler.numWaiting === 0 && this.#scheduler.numRunning === 0 && this.#inflight === undefined)
      return;
    this.#loopScheduled = true;
    setImmediate(() => {
      this.#loopScheduled = false;
      let progressed = false;
      try {
        progressed = this.#step();
      } catch (e) {
        // Only a bug gets here (scheduling or bookkeeping threw); the state may be inconsistent, so
        // every live request fails rather than hang.
        this.#inStep = false;
        this.#failAll(e);
      }
      if (progressed) this.#kick();
    });
  }

  /** Runs one step; false when there was nothing to schedule. */
  #step(): boolean {
    if (this.#inflight !== undefined) return this.#continueStep(this.#inflight);
    const t0 = performance.now();
    this.#inStep = true;
    const touched: RequestState[] = [];
    let out: SchedulerOutput<Choice>;
    let modelMs = 0;
    let samplingMs = 0;
    let graphBatchSize: number | undefined;
    try {
      out = this.#scheduler.schedule();
      if (out.scheduled.length === 0) return false;
      const built = this.#builder.build(out);
      const tm = performance.now();
      let logits: Tensor;
      try {
        const fwd = this.#forward(built.batch);
        logits = fwd.logits;
        graphBatchSize = fwd.graphBatchSize;
      } catch (e) {
        this.#failStep(out, touched, engineModelFailed, e);
        return true;
      }
      modelMs = performance.now() - tm;
      try {
        this.#scheduler.onStepComputed(out);
        readPromptLogprobs(
          this.model.device,
          logits,
          built.promptLogits,
          (c) => c.request.params.promptLogprobs ?? 0,
          (c, position, lp) => {
            c.request.promptLogprobs![position] = lp;
          },
        );
        const { rows, forks } = this.#samplingRows(built.sampling, built.samplingRows);
        const pending = this.#sampleAsync(logits, rows);
        if (pending !== undefined) {
          this.#inflight = { out, rows, forks, pending, t0, modelMs, graphBatchSize };
          return true;
        }
        samplingMs = this.#sampleAndAppend(rows, forks, logits, touched);
      } catch (e) {
        // A bug or a device failure surfacing when the logits are read: fail the step's requests
        // rather than leave them hanging.
        this.#failSampledStep(out, touched, e);
        return true;
      } finally {
        this.model.device.release(logits);
      }
    } finally {
      this.#inStep = false;
    }
    for (const req of touched) this.#emit(req);
    this.#applyPendingAborts();
    this.#notifyIdle();
    this.#emitStepStats(out, performance.now() - t0, modelMs, samplingMs, graphBatchSize);
    return true;
  }

  /** model.forward, through a decode graph where the step is decode-only and fits the ladder. The
   * logits may then have padding rows after the batch's own (the samplers read rows by index). */
  #forward(batch: ForwardBatch): { logits: Tensor; graphBatchSize?: number } {
    const d = this.model.device;
    const size = this.#graphSizes.length === 0 ? undefined : decodeGraphSize(batch, this.#graphSizes);
    if (
      size === undefined ||
      d.graph === undefined ||
      this.#graphFailed.has(size) ||
      batch.attention.maxBlocksPerReq > this.#graphTableWidth
    ) {
      return { logits: this.model.forward(batch) };
    }
    const key = `decode-${size}`;
    // With async scheduling every graph of the ladder merges device token ids (its captured uploads
    // must be the same at every replay), so a step without any gets rows of -1.
    const withIds =
      this.#async && batch.prevTokenIds === undefined
        ? {
            ...batch,
            prevTokenIds: {
              ids: this.#deviceIds(),
              rows: this.#noDeviceRows.subarray(0, batch.attention.numReqs),
            },
          }
        : batch;
    const padded = { ...this.#builder.padDecode(withIds, size, this.#graphTableWidth), graphKey: key };
    try {
      return { logits: d.graph(key, () => this.model.forward(padded)), graphBatchSize: size };
    } catch (e) {
      // A capture or replay that fails throws before the graph is launched, so nothing ran: this size
      // goes eager from now on, and the step is retried eagerly (a lost context fails it there too).
      this.#graphFailed.add(size);
      this.#safeEmit('graphFallback', {
        batchSize: size,
        error: e instanceof Error ? e : new Error(String(e)),
      });
      return { logits: this.model.forward(batch) };
    }
  }

  #emitStepStats(
    out: SchedulerOutput<Choice>,
    stepMs: number,
    modelMs: number,
    samplingMs: number,
    graphBatchSize: number | undefined,
  ): void {
    let prefill = 0;
    let decode = 0;
    for (let i = 0; i < out.scheduled.length; i++) {
      const n = out.numNewTokens[i]!;
      if (out.scheduled[i]!.numComputedTokens - n < out.scheduled[i]!.promptLen) prefill += n;
      else decode += n;
    }
    this.#safeEmit('step', {
      numScheduledSeqs: out.scheduled.length,
      numPrefillTokens: prefill,
      numDecodeTokens: decode,
      numPreempted: out.preempted.length,
      stepMs,
      modelMs,
      samplingMs,
      ...(graphBatchSize === undefined ? {} : { graphBatchSize }),
    });
  }

  /** The step's sampling rows: one per sampling choice, plus n - 1 for a request whose first sample
   * forks its choices. */
  #samplingRows(
    sampling: readonly Choice[],
    samplingRows: readonly number[],
  ): { rows: SamplingRow[]; forks: Fork[] } {
    const rows: SamplingRow[] = [];
    const forks: Fork[] = [];
    for (let r = 0; r < sampling.length; r++) {
      const c = sampling[r]!;
      c.logitsRow = samplingRows[r]!;
      // The prompt is computed once sampling starts; a recompute after preemption may use the cache.
      c.wantsPromptLogits = false;
      const req = c.request;
      if (c.index === 0 && req.choices.length < req.params.n) {
        forks.push({ parent: c, firstRow: rows.length });
        rows.push(c);
        for (let i = 1; i < req.params.n; i++) {
          rows.push({
            logitsRow: c.logitsRow,
            params: req.params,
            rng: req.rngs[i]!,
            promptTokens: req.promptTokenIds,
            outputCounts: NO_COUNTS,
            bannedTokenIds: c.bannedTokenIds,
            promptTokenSet: undefined,
          });
        }
      } else {
        rows.push(c);
      }
    }
    return { rows, forks };
  }

  /** Samples on the host's schedule (waits for the step) and appends; returns the sampler's ms. */
  #sampleAndAppend(
    rows: readonly SamplingRow[],
    forks: readonly Fork[],
    logits: Tensor,
    touched: RequestState[],
  ): number {
    const ts = performance.now();
    const sampled = this.#sampler.sample(logits, this.model.device, rows);
    // Once the sampled ids are on the host the step has finished on the device: a model whose step
    // broke meanwhile (Model.checkStep) throws here, before any of its tokens is appended.
    this.model.checkStep?.();
    const samplingMs = performance.now() - ts;
    this.#appendSampled(rows, forks, sampled, touched);
    return samplingMs;
  }

  /** Queues the sampling when async scheduling is on and the sampler can; undefined otherwise. */
  #sampleAsync(logits: Tensor, rows: readonly SamplingRow[]): PendingSample | undefined {
    if (!this.#async || rows.length === 0) return undefined;
    return this.#sampler.sampleAsync?.(logits, this.model.device, rows, this.#deviceIds());
  }

  #deviceIds(): Tensor {
    this.#sampledIds ??= this.model.device.zeros([this.#opts.maxNumSeqs], 'i32');
    return this.#sampledIds;
  }

  #appendSampled(
    rows: readonly SamplingRow[],
    forks: readonly Fork[],
    sampled: readonly SampledToken[],
    touched: RequestState[],
  ): void {
    const now = Date.now();
    // Fork before any token is appended: a choice that stops on its first token frees its blocks.
    const forkedAt = new Map<number, Choice>();
    for (const { parent, firstRow } of forks) {
      const req = parent.request;
      // Ended while its step was in flight (async scheduling): nothing to fork.
      if (req.finished) continue;
      const children: Choice[] = [];
      for (let i = 1; i < req.params.n; i++) {
        const child = new Choice(req, i, req.promptTokenIds.slice(), req.rngs[i]!, this.#detokenizer(req), 1);
        child.numComputedTokens = this.#kv.fork(parent.blocks, parent.numComputedTokens, child.blocks);
        child.numCachedPromptTokens = parent.numCachedPromptTokens;
        req.choices.push(child);
        children.push(child);
        forkedAt.set(firstRow + i, child);
      }
      this.#scheduler.addForkedChildren(parent, children);
    }

    for (let r = 0; r < rows.length; r++) {
      const row = rows[r]!;
      const choice = row instanceof Choice ? row : forkedAt.get(r);
      // A choice that ended while its step was in flight (an abort) drops the token.
      if (choice === undefined || choice.finishReason !== null) continue;
      const s = sampled[r]!;
      this.#appendToken(choice, s.tokenId, s.logprob, now, touched);
    }
  }

  // --- async scheduling ---------------------------------------------------------------------------

  /** One pipelined iteration: launches the step continuing `prev` (when nothing else needs the
   * scheduler), finishes `prev` while the device runs it, then queues its sampling. */
  #continueStep(prev: InflightStep): boolean {
    const t0 = performance.now();
    this.#inflight = undefined;
    this.#inStep = true;
    const touched: RequestState[] = [];
    let next: { out: SchedulerOutput<Choice>; logits: Tensor; graphBatchSize?: number } | undefined;
    let modelMs = 0;
    let samplingMs = 0;
    try {
      const plan = this.#planContinuation(prev);
      let launchError: unknown;
      if (plan !== undefined) {
        const built = this.#builder.build(plan.out, 1);
        const batch = {
          ...built.batch,
          prevTokenIds: { ids: this.#deviceIds(), rows: plan.prevRows },
        };
        const tm = performance.now();
        try {
          next = { out: plan.out, ...this.#forward(batch) };
        } catch (e) {
          launchError = e;
        }
        modelMs = performance.now() - tm;
      }
      // The host work of the step in flight overlaps the device running the one just launched.
      const prevSamplingMs = this.#finishInflight(prev, touched);
      this.#emitStepStats(
        prev.out,
        performance.now() - prev.t0,
        prev.modelMs,
        prevSamplingMs,
        prev.graphBatchSize,
      );
      if (launchError !== undefined) {
        this.#failStep(plan!.out, touched, engineModelFailed, launchError);
      } else if (next !== undefined) {
        samplingMs = this.#sampleContinuation(
          next.out,
          next.logits,
          touched,
          t0,
          modelMs,
          next.graphBatchSize,
        );
      }
    } finally {
      this.#inStep = false;
      if (next !== undefined) this.model.device.release(next.logits);
    }
    for (const req of touched) if (req.dirty) this.#emit(req);
    this.#applyPendingAborts();
    this.#notifyIdle();
    if (next !== undefined && this.#inflight === undefined) {
      this.#emitStepStats(next.out, performance.now() - t0, modelMs, samplingMs, next.graphBatchSize);
    }
    return true;
  }

  /** The step that continues `prev`: each of its sampling choices decodes the token being sampled
   * (one new slot each), or undefined when anything else needs the scheduler (waiting requests, a
   * chunked prefill, forks, no room for a slot) or nothing would continue. */
  #planContinuation(prev: InflightStep): { out: SchedulerOutput<Choice>; prevRows: Int32Array } | undefined {
    if (prev.forks.length > 0 || this.#scheduler.numWaiting > 0 || this.#pendingAborts.length > 0)
      return undefined;
    const inPrev = new Set<SamplingRow>(prev.rows);
    for (const seq of this.#scheduler.running) {
      if (seq.status === 'running' && !inPrev.has(seq)) return undefined;
    }
    const seqs: Choice[] = [];
    const rows: number[] = [];
    for (let r = 0; r < prev.rows.length; r++) {
      const c = prev.rows[r]! as Choice;
      if (c.status !== 'running' || this.#endsWithNextToken(c)) continue;
      seqs.push(c);
      rows.push(r);
    }
    if (seqs.length === 0) return undefined;
    // Slots that fit stay allocated when a later one does not: the scheduler would allocate them next.
    for (const c of seqs) if (!this.#kv.allocateSlots(c.blocks, c.numComputedTokens, 1)) return undefined;
    return { out: oneTokenEach(seqs), prevRows: Int32Array.from(rows) };
  }

  /** Whether the token being sampled for `c` surely ends it by length (computing past it is waste). */
  #endsWithNextToken(c: Choice): boolean {
    return c.numOutputTokens + 1 >= c.request.params.maxTokens || c.numTokens + 1 >= this.maxModelLen;
  }

  /** Waits for the step in flight and appends its tokens; returns the wait in ms. A step that failed
   * fails its requests (the continuation's, a subset, then have nothing left to sample). */
  #finishInflight(prev: InflightStep, touched: RequestState[]): number {
    const ts = performance.now();
    try {
      const sampled = prev.pending.wait();
      this.model.checkStep?.();
      const waitMs = performance.now() - ts;
      this.#appendSampled(prev.rows, prev.forks, sampled, touched);
      return waitMs;
    } catch (e) {
      this.#failSampledStep(prev.out, touched, e);
      return performance.now() - ts;
    }
  }

  /** The continuation's bookkeeping once its input tokens are on the host, then its sampling: queued
   * (the step stays in flight) or, when the sampler cannot, done now. Returns the sampler's ms. */
  #sampleContinuation(
    out: SchedulerOutput<Choice>,
    logits: Tensor,
    touched: RequestState[],
    t0: number,
    modelMs: number,
    graphBatchSize: number | undefined,
  ): number {
    const live: Choice[] = [];
    const logitsRows: number[] = [];
    for (let i = 0; i < out.scheduled.length; i++) {
      const c = out.scheduled[i]!;
      if (c.status !== 'running') continue;
      live.push(c);
      logitsRows.push(i);
    }
    if (live.length === 0) return 0;
    const liveOut = oneTokenEach(live);
    try {
      this.#scheduler.onStepComputed(liveOut);
      const { rows, forks } = this.#samplingRows(live, logitsRows);
      const pending = this.#sampleAsync(logits, rows);
      if (pending !== undefined) {
        this.#inflight = { out: liveOut, rows, forks, pending, t0, modelMs, graphBatchSize };
        return 0;
      }
      return this.#sampleAndAppend(rows, forks, logits, touched);
    } catch (e) {
      this.#failSampledStep(liveOut, touched, e);
      return 0;
    }
  }

  #appendToken(
    c: Choice,
    tokenId: number,
    logprob: TokenLogprob | undefined,
    now: number,
    touched: RequestState[],
  ) {
    const req = c.request;
    c.tokens.push(tokenId);
    c.outputTokenIds.push(tokenId);
    c.outputCounts.set(tokenId, (c.outputCounts.get(tokenId) ?? 0) + 1);
    c.newTokenIds.push(tokenId);
    if (logprob !== undefined) {
      c.newLogprobs ??= [];
      c.newLogprobs.push(logprob);
    }
    this.#generationTokensTotal++;
    if (req.firstTokenTime === undefined) {
      req.firstTokenTime = now;
      this.#promptTokensTotal += req.promptTokenIds.length;
    }
    if (!req.dirty) {
      req.dirty = true;
      touched.push(req);
    }

    const verdict = appendTextAndCheckStop(c, tokenId, this.#eosTokenIds, this.maxModelLen);
    if (verdict !== undefined) this.#finishChoice(c, verdict.reason, verdict.stopReason);
  }

  #finishChoice(c: Choice, reason: FinishReason, stopReason: string | number | undefined): void {
    c.flushHeld();
    c.finishReason = reason;
    c.stopReason = stopReason;
    this.#scheduler.finish(c);
    const req = c.request;
    if (req.allChoicesFinished) {
      req.finished = true;
      req.finishedTime = Date.now();
      this.#requests.delete(req.requestId);
    }
  }

  /** Ends every unfinished choice of a request (abort or failure) and emits its final output. */
  #finishRequest(req: RequestState, reason: FinishReason, error?: Error): void {
    for (const c of req.choices) {
      if (c.finishReason === null) {
        c.flushHeld();
        c.finishReason = reason;
        this.#scheduler.finish(c);
      }
    }
    req.finished = true;
    req.finishedTime = Date.now();
    req.error = error;
    this.#requests.delete(req.requestId);
    this.#emit(req);
    if (error !== undefined) {
      try {
        this.events.emit('error', error, req.requestId);
      } catch {
        // See #safeEmit.
      }
    }
    this.#notifyIdle();
  }

  /** Fails every request of a step that threw; requests that already finished in it are reported. */
  #failStep(
    out: SchedulerOutput<Choice>,
    touched: readonly RequestState[],
    makeError: (detail: string) => Error,
    cause: unknown,
  ): void {
    const detail = cause instanceof Error ? cause.message : String(cause);
    this.#inStep = false;
    const failed = new Set<RequestState>(touched);
    for (const c of out.scheduled) failed.add(c.request);
    for (const req of failed) {
      if (req.finished) {
        if (req.dirty) this.#emit(req);
        continue;
      }
      const err = makeError(detail);
      err.cause = cause;
      this.#finishRequest(req, 'abort', err);
    }
    this.#applyPendingAborts();
  }

  /** Fails a step whose sampling (or the wait for it) threw. A model whose step broke (checkStep) is
   * the cause even when reading its garbage logits failed first. Still inside the step afterwards
   * (#failStep leaves it so that the failed requests' aborts apply at once). */
  #failSampledStep(out: SchedulerOutput<Choice>, touched: readonly RequestState[], cause: unknown): void {
    const broken = modelStepError(this.model);
    this.#failStep(
      out,
      touched,
      broken === undefined ? engineStepFailed : engineModelFailed,
      broken ?? cause,
    );
    this.#inStep = true;
  }

  #failAll(cause: unknown): void {
    const detail = cause instanceof Error ? cause.message : String(cause);
    for (const req of [...this.#requests.values()]) {
      const err = engineStepFailed(detail);
      err.cause = cause;
      try {
        this.#finishRequest(req, 'abort', err);
      } catch {
        // Freeing failed on the same inconsistency: the blocks are lost, but the request still ends.
        if (!req.finished || this.#requests.has(req.requestId)) {
          req.finished = true;
          req.error = err;
          this.#requests.delete(req.requestId);
          this.#emit(req);
        }
      }
    }
  }

  #emit(req: RequestState): void {
    const out = req.takeOutput();
    req.stream.push(out);
    this.#safeEmit('output', out);
    if (out.finished) this.#safeEmit('finished', out);
  }

  /** A listener that throws must not stop the loop (every other request would hang): its error is
   * reported on 'error' instead. */
  #safeEmit<E extends 'output' | 'finished' | 'step' | 'graphFallback'>(
    event: E,
    arg: Parameters<EngineEvents[E]>[0],
  ): void {
    try {
      (this.events.emit as (e: E, a: unknown) => boolean)(event, arg);
    } catch (e) {
      try {
        this.events.emit('error', e instanceof Error ? e : new Error(String(e)));
      } catch {
        // An 'error' listener that throws too has nothing left to tell.
      }
    }
  }

  #applyPendingAborts(): void {
    while (this.#pendingAborts.length > 0) this.abort(this.#pendingAborts.shift()!);
  }

  #notifyIdle(): void {
    if (this.#requests.size > 0 || this.#idleWaiters.length === 0) return;
    for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  #detokenizer(req: RequestState): Detokenizer | undefined {
    if (this.tokenizer === undefined) return undefined;
    return createDetokenizer(this.tokenizer, req.promptTokenIds, req.params.skipSpecialTokens);
  }

  /** KV blocks the request holds at its longest: the prompt's full blocks are shared by its choices,
   * each choice owns the rest. */
  #blocksAtLongest(promptLen: number, maxTokens: number, n: number): number {
    const bs = this.blockSize;
    if (n === 1) return Math.ceil((promptLen + maxTokens) / bs);
    const shared = Math.floor(promptLen / bs);
    return shared + n * Math.ceil((promptLen - shared * bs + maxTokens) / bs);
  }
}

/** A decode step of one token for each of `seqs` (a continuation under async scheduling). */
function oneTokenEach(seqs: Choice[]): SchedulerOutput<Choice> {
  return { scheduled: seqs, numNewTokens: seqs.map(() => 1), totalNumTokens: seqs.length, preempted: [] };
}

/** The error a model's checkStep throws for the step just run, or undefined when the step stands. */
function modelStepError(model: Model): unknown {
  try {
    model.checkStep?.();
    return undefined;
  } catch (e) {
    return e;
  }
}
