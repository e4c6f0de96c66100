// One API request as a group of engine requests: a completions `prompt` batch becomes one engine
// request per prompt (each generating its n choices), sharing an id prefix. The group is admitted
// all-or-nothing (if the engine refuses one prompt, those already added are aborted), can be aborted
// as a whole (client disconnect), and merges its requests' output streams in arrival order.

import type { RequestHandle, RequestOutput, SamplingParams, TokenLogprob } from '@flashserve/core';
import { FlashserveError } from '@flashserve/core';
import type { ServingEngine } from '../engine-port.js';
import { serverRequestFailed } from '../errors.js';

export interface TaggedOutput {
  /** Which prompt of the batch the output belongs to. */
  readonly promptIndex: number;
  readonly output: RequestOutput;
}

export interface CollectedOutputs {
  /** The last output of each prompt's request (finished). */
  readonly finals: readonly RequestOutput[];
  /** Per prompt: choice index -> that choice's logprobs, one entry per generated token. */
  readonly logprobs: readonly ReadonlyMap<number, TokenLogprob[]>[];
}

export class Generation {
  readonly handles: readonly RequestHandle[];
  /** Requests whose stream has ended; aborting them again is pointless. */
  readonly #ended: boolean[];

  private constructor(handles: RequestHandle[]) {
    this.handles = handles;
    this.#ended = handles.map(() => false);
  }

  static start(
    engine: ServingEngine,
    requestId: string,
    prompts: readonly (readonly number[])[],
    params: SamplingParams,
  ): Generation {
    const handles: RequestHandle[] = [];
    const arrivalTime = Date.now();
    try {
      prompts.forEach((promptTokenIds, i) => {
        const id = prompts.length === 1 ? requestId : `${requestId}-${i}`;
        handles.push(engine.addRequest({ requestId: id, promptTokenIds, params, arrivalTime }));
      });
    } catch (err) {
      for (const h of handles) h.abort();
      throw err;
    }
    return new Generation(handles);
  }

  /** Aborts every request still running. Safe to call any number of times. */
  abort(): void {
    this.handles.forEach((h, i) => {
      if (!this.#ended[i]) h.abort();
      this.#ended[i] = true;
    });
  }

  /** Runs every request to the end: the final output of each prompt, and every choice's logprobs
   * gathered across steps (outputs carry only each step's new entries). Throws a 500-kind error if
   * the engine failed a request. */
  async collect(): Promise<CollectedOutputs> {
    const finals: (RequestOutput | undefined)[] = this.handles.map(() => undefined);
    const logprobs = this.handles.map(() => new Map<number, TokenLogprob[]>());
    for await (const { promptIndex, output } of this.stream()) {
      finals[promptIndex] = output;
      for (const c of output.outputs) {
        if (!c.logprobs || c.logprobs.length === 0) continue;
        const perChoice = logprobs[promptIndex] as Map<number, TokenLogprob[]>;
        const list = perChoice.get(c.index) ?? [];
        list.push(...c.logprobs);
        perChoice.set(c.index, list);
      }
    }
    const done = finals.filter((f): f is RequestOutput => f !== undefined);
    if (done.length !== finals.length) throw serverRequestFailed('a request ended without output');
    return { finals: done, logprobs };
  }

  /** Every step's outputs of every prompt, in the order they arrive. */
  async *stream(): AsyncGenerator<TaggedOutput> {
    const iterators = this.handles.map((h) => h[Symbol.asyncIterator]());
    type Step = { i: number; result?: IteratorResult<RequestOutput>; error?: unknown };
    // Rejections become values so that a request failing while another is awaited is never unhandled.
    const next = (i: number): Promise<Step> =>
      (iterators[i] as AsyncIterator<RequestOutput>).next().then(
        (result) => ({ i, result }),
        (error: unknown) => ({ i, error }),
      );
    const pending = new Map<number, Promise<Step>>();
    for (let i = 0; i < iterators.length; i++) pending.set(i, next(i));
    try {
      while (pending.size > 0) {
        const { i, result, error } = await Promise.race(pending.values());
        if (!result) throw asServingError(error);
        if (result.done) {
          this.#ended[i] = true;
          pending.delete(i);
          continue;
        }
        if (result.value.error) throw asServingError(result.value.error);
        pending.set(i, next(i));
        yield { promptIndex: i, output: result.value };
      }
    } finally {
      // Leaving early (error, disconnect) must not leave engine requests running.
      if (pending.size > 0) this.abort();
    }
  }
}

/** Engine errors that already carry a status (shutdown 503, model failure 500) pass through. */
function asServingError(err: unknown): Error {
  if (err instanceof FlashserveError) return err;
  return serverRequestFailed(err instanceof Error ? err.message : String(err));
}
