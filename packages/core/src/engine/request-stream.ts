// The consumer side of one request: an async iterator of outputs plus a promise of the final one.
//
// NOTE: outputs the consumer has not read yet are merged into one (token ids and text deltas
// concatenated, cumulative fields from the newer output), so a slow or absent reader costs O(1)
// memory per request instead of one buffered output per step.

import type { CompletionOutput, RequestHandle, RequestOutput } from './protocol.js';

export class RequestStream implements RequestHandle {
  readonly requestId: string;
  readonly #abort: () => void;
  #pending: RequestOutput | undefined;
  #final: RequestOutput | undefined;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #iterating = false;
  readonly #done: Promise<RequestOutput>;
  #resolveDone!: (out: RequestOutput) => void;
  #rejectDone!: (err: Error) => void;

  constructor(requestId: string, abort: () => void) {
    this.requestId = requestId;
    this.#abort = abort;
    this.#done = new Promise<RequestOutput>((resolve, reject) => {
      this.#resolveDone = resolve;
      this.#rejectDone = reject;
    });
    // A caller that only iterates must not trigger an unhandled rejection when the request fails.
    this.#done.catch(() => {});
  }

  abort(): void {
    this.#abort();
  }

  done(): Promise<RequestOutput> {
    return this.#done;
  }

  /** Engine side: a new output for this request. */
  push(out: RequestOutput): void {
    this.#pending = this.#pending === undefined ? out : mergeOutputs(this.#pending, out);
    if (out.finished) {
      this.#final = out;
      if (out.error !== undefined) {
        this.#error = out.error;
        this.#rejectDone(out.error);
      } else {
        this.#resolveDone(out);
      }
    }
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<RequestOutput> {
    if (this.#iterating) throw new Error(`request ${this.requestId}: its outputs can be iterated only once`);
    this.#iterating = true;
    let completed = false;
    try {
      for (;;) {
        if (this.#pending === undefined) {
          if (this.#final !== undefined) break;
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
          });
          this.#wake = undefined;
          continue;
        }
        const out = this.#pending;
        this.#pending = undefined;
        if (out.finished && this.#error !== undefined) throw this.#error;
        yield out;
        if (out.finished) break;
      }
      completed = true;
    } finally {
      // Leaving a for-await loop early (break, return, throw in the body) aborts the request.
      if (!completed && this.#final === undefined) this.#abort();
    }
  }
}

function mergeOutputs(a: RequestOutput, b: RequestOutput): RequestOutput {
  const outputs: CompletionOutput[] = b.outputs.map((nb, i) => {
    const na = a.outputs[i];
    if (na === undefined) return nb;
    const merged: CompletionOutput = {
      ...nb,
      newTokenIds: na.newTokenIds.concat(nb.newTokenIds),
      newText: na.newText + nb.newText,
    };
    if (na.logprobs !== undefined || nb.logprobs !== undefined) {
      merged.logprobs = (na.logprobs ?? []).concat(nb.logprobs ?? []);
    }
    return merged;
  });
  return { ...b, outputs };
}
