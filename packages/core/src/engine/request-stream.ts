// The consumer side of one request: an async iterator of outputs plus a promise of the final one.
//
// NOTE: outputs the consumer has not read yet are merged into one (token ids, text and logprobs of
// each step concatenated, cumulative fields from the newest output). Only the newest output and the
// per-step pieces are kept, so a slow or absent reader costs memory linear in the output and O(1)
// work per step, never one buffered snapshot per step.

import type { CompletionOutput, RequestHandle, RequestOutput, TokenLogprob } from './protocol.js';

/** Per choice: the new-token pieces of the outputs merged so far. */
interface Pieces {
  tokenIds: number[][];
  texts: string[];
  logprobs: TokenLogprob[][] | undefined;
}

export class RequestStream implements RequestHandle {
  readonly requestId: string;
  readonly #abort: () => void;
  #pending: RequestOutput | undefined;
  #pieces: Pieces[] | undefined;
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
    if (this.#pending === undefined) {
      this.#pending = out;
    } else {
      this.#pieces ??= this.#pending.outputs.map(piecesOf);
      const pieces = this.#pieces;
      for (let i = 0; i < out.outputs.length; i++) {
        pieces[i] ??= emptyPieces();
        addPieces(pieces[i]!, out.outputs[i]!);
      }
      this.#pending = out;
    }
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

  #takePending(): RequestOutput {
    const latest = this.#pending!;
    const pieces = this.#pieces;
    this.#pending = undefined;
    this.#pieces = undefined;
    if (pieces === undefined) return latest;
    const outputs = latest.outputs.map((o, i): CompletionOutput => {
      const p = pieces[i];
      if (p === undefined) return o;
      const merged: CompletionOutput = { ...o, newTokenIds: p.tokenIds.flat(), newText: p.texts.join('') };
      if (o.logprobs !== undefined) merged.logprobs = p.logprobs?.flat() ?? [];
      return merged;
    });
    return { ...latest, outputs };
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
        const out = this.#takePending();
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

function emptyPieces(): Pieces {
  return { tokenIds: [], texts: [], logprobs: undefined };
}

function piecesOf(o: CompletionOutput): Pieces {
  const p = emptyPieces();
  addPieces(p, o);
  return p;
}

function addPieces(p: Pieces, o: CompletionOutput): void {
  if (o.newTokenIds.length > 0) p.tokenIds.push(o.newTokenIds);
  if (o.newText.length > 0) p.texts.push(o.newText);
  if (o.logprobs !== undefined && o.logprobs.length > 0) {
    p.logprobs ??= [];
    p.logprobs.push(o.logprobs);
  }
}
