// Continuous batching in the style of vLLM's v1 scheduler: no separate prefill and decode phases.
// Each step has one token budget; every sequence simply has tokens not yet computed
// (numTokens - numComputedTokens): a whole or partial prompt (chunked prefill), or the one token
// sampled last step. Running sequences are served first in admission order, then waiting ones in
// queue order.
//
// Invariants:
// - running holds sequences in admission order; preemption takes its tail (the most recently
//   admitted), so sequences scheduled earlier in the same step are never its victims.
// - A waiting sequence holds no blocks and has numComputedTokens = 0 (preemption recomputes; the
//   prefix cache usually makes that cheap).
// - The sum of reservedSeqs over running sequences never exceeds maxNumSeqs.

import { type KvCacheManager, NO_PREFIX } from '../kv-cache/kv-cache-manager.js';
import type { SchedulerApi, SchedulerConfig } from './interface.js';
import type { SchedulerOutput } from './output.js';
import { RequestQueue } from './request-queue.js';
import type { Sequence } from './sequence.js';

export class Scheduler<S extends Sequence> implements SchedulerApi<S> {
  readonly #kv: KvCacheManager;
  readonly #config: SchedulerConfig;
  readonly #waiting = new RequestQueue<S>();
  #running: S[] = [];
  #numWaiting = 0;
  #reservedSeqs = 0;
  /** Sequences preempted since construction. */
  numPreemptions = 0;

  constructor(kv: KvCacheManager, config: SchedulerConfig) {
    this.#kv = kv;
    this.#config = config;
  }

  get numWaiting(): number {
    return this.#numWaiting;
  }

  /** Sequence slots held by running sequences, counted against maxNumSeqs (a sequence whose choices
   * have not forked yet holds one per choice). Zero exactly when nothing runs. */
  get numRunning(): number {
    return this.#reservedSeqs;
  }

  /** Running sequences in admission order (finished ones may linger until the next schedule()). */
  get running(): readonly S[] {
    return this.#running;
  }

  add(seq: S): void {
    seq.status = 'waiting';
    this.#waiting.pushBack(seq);
    this.#numWaiting++;
  }

  finish(seq: S): void {
    if (seq.status === 'finished') return;
    if (seq.status === 'waiting') this.#numWaiting--;
    else this.#reservedSeqs -= seq.reservedSeqs;
    seq.status = 'finished';
    this.#kv.free(seq.blocks);
  }

  addForkedChildren(parent: S, children: readonly S[]): void {
    // The parent reserved its choices' slots at admission; hand them over one by one so the total
    // stays the same and never passes maxNumSeqs.
    for (const child of children) {
      if (parent.reservedSeqs > 1) {
        parent.reservedSeqs--;
        if (parent.status === 'running') this.#reservedSeqs--;
      }
      child.reservedSeqs = 1;
      child.status = 'running';
      this.#running.push(child);
      this.#reservedSeqs++;
    }
    if (parent.status === 'running' && parent.reservedSeqs > 1) {
      this.#reservedSeqs -= parent.reservedSeqs - 1;
    }
    parent.reservedSeqs = 1;
  }

  schedule(): SchedulerOutput<S> {
    if (this.#running.some((s) => s.status !== 'running')) {
      this.#running = this.#running.filter((s) => s.status === 'running');
    }
    const scheduled: S[] = [];
    const numNewTokens: number[] = [];
    const preempted: S[] = [];
    let budget = this.#config.maxNumBatchedTokens;

    // 1. Running sequences, in admission order.
    const running = this.#running;
    for (let i = 0; i < running.length && budget > 0; i++) {
      const seq = running[i]!;
      const n = Math.min(seq.numTokens - seq.numComputedTokens, budget);
      if (n <= 0) continue;
      let fits = false;
      while (!fits) {
        fits = this.#kv.allocateSlots(seq.blocks, seq.numComputedTokens, n);
        if (fits) break;
        const victim = running.pop()!;
        this.#preempt(victim);
        preempted.push(victim);
        if (victim === seq) break;
      }
      if (!fits) break;
      scheduled.push(seq);
      numNewTokens.push(n);
      budget -= n;
    }

    // 2. Waiting sequences, only when nothing had to be preempted (there is no room to spare).
    if (preempted.length === 0) {
      while (budget > 0) {
        const seq = this.#waiting.peek();
        if (seq === undefined) break;
        if (seq.status === 'finished') {
          this.#waiting.popFront();
          continue;
        }
        if (this.#reservedSeqs + seq.reservedSeqs > this.#config.maxNumSeqs) break;
        const prefix = seq.wantsPromptLogits
          ? NO_PREFIX
          : this.#kv.findCachedPrefix(seq.blocks, seq.tokens, seq.numTokens);
        const n = Math.min(seq.numTokens - prefix.numTokens, budget);
        if (!this.#kv.allocateSlots(seq.blocks, prefix.numTokens, n, prefix)) break;
        this.#waiting.popFront();
        this.#numWaiting--;
        seq.numComputedTokens = prefix.numTokens;
        seq.numCachedPromptTokens ??= Math.min(prefix.numTokens, seq.promptLen);
        seq.status = 'running';
        running.push(seq);
        this.#reservedSeqs += seq.reservedSeqs;
        scheduled.push(seq);
        numNewTokens.push(n);
        budget -= n;
      }
    }

    return {
      scheduled,
      numNewTokens,
      totalNumTokens: this.#config.maxNumBatchedTokens - budget,
      preempted,
    };
  }

  onStepComputed(out: SchedulerOutput<S>): void {
    for (let i = 0; i < out.scheduled.length; i++) {
      const seq = out.scheduled[i]!;
      seq.numComputedTokens += out.numNewTokens[i]!;
      this.#kv.cacheComputedBlocks(seq.blocks, seq.tokens, seq.numComputedTokens);
    }
  }

  #preempt(seq: S): void {
    this.#kv.free(seq.blocks);
    this.#reservedSeqs -= seq.reservedSeqs;
    seq.numComputedTokens = 0;
    seq.numPreemptions++;
    seq.status = 'waiting';
    this.#waiting.pushFront(seq);
    this.#numWaiting++;
    this.numPreemptions++;
  }
}
