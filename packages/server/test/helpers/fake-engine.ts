// A scripted engine and byte-level tokenizer for unit tests of the HTTP layer alone (error mapping,
// SSE framing) where the real model would only cost time. Integration tests use the real engine.
//
// Tokens are bytes (id = byte value); 256 is EOS and 257 BOS. A request generates the letters of
// "abcdefghij..." cyclically, shifted by its seed, one token per step every `stepMs`.

import { EventEmitter } from 'node:events';
import type {
  AddRequestInput,
  ChatMessage,
  CompletionOutput,
  EngineStats,
  RequestHandle,
  RequestOutput,
  Tokenizer,
} from '@flashserve/core';
import { engineOverloaded } from '@flashserve/core';
import type { EngineEventSource, ServingEngine } from '../../src/engine-port.js';

export const FAKE_EOS = 256;
export const FAKE_BOS = 257;

export const fakeTokenizer: Tokenizer = {
  vocabSize: 300,
  eosTokenIds: [FAKE_EOS],
  specialTokenIds: new Set([FAKE_EOS, FAKE_BOS]),
  encode(text, options) {
    const bytes = [...Buffer.from(text, 'utf8')];
    return options?.addSpecialTokens === false ? bytes : [FAKE_BOS, ...bytes];
  },
  decode(ids, options) {
    const bytes = ids.filter((id) => id < 256 || !options?.skipSpecialTokens);
    return Buffer.from(bytes.map((b) => (b < 256 ? b : 63))).toString('utf8');
  },
  applyChatTemplate(messages: readonly ChatMessage[], options) {
    const body = messages.map((m) => `<${m.role}>${m.content}`).join('');
    return body + (options?.addGenerationPrompt ? '<assistant>' : '');
  },
};

interface Live {
  input: AddRequestInput;
  outputs: CompletionOutput[];
  push: (out: RequestOutput) => void;
}

export class FakeEngine implements ServingEngine {
  readonly emitter = new EventEmitter();
  readonly events: EngineEventSource = {
    on: (event, fn) => this.emitter.on(event, fn as (...args: unknown[]) => void),
    off: (event, fn) => this.emitter.off(event, fn as (...args: unknown[]) => void),
  };
  readonly totalBlocks = 1000;
  readonly #live = new Map<string, Live>();
  #timer: NodeJS.Timeout | undefined;
  #nextId = 0;

  constructor(readonly opts: { stepMs?: number; maxWaiting?: number } = {}) {}

  addRequest(input: AddRequestInput): RequestHandle {
    if (this.opts.maxWaiting !== undefined && this.#live.size >= this.opts.maxWaiting) {
      throw engineOverloaded(this.opts.maxWaiting);
    }
    const requestId = input.requestId ?? `fake-${this.#nextId++}`;
    const queue: RequestOutput[] = [];
    let wake: (() => void) | undefined;
    let final: RequestOutput | undefined;
    let resolveDone!: (o: RequestOutput) => void;
    const done = new Promise<RequestOutput>((r) => {
      resolveDone = r;
    });
    const live: Live = {
      input,
      outputs: Array.from({ length: input.params.n }, (_, index) => ({
        index,
        tokenIds: [],
        text: '',
        newTokenIds: [],
        newText: '',
        finishReason: null,
      })),
      push: (out) => {
        queue.push(out);
        if (out.finished) {
          final = out;
          resolveDone(out);
        }
        wake?.();
      },
    };
    this.#live.set(requestId, live);
    this.#schedule();
    const abort = () => this.abort(requestId);
    return {
      requestId,
      abort,
      done: () => done,
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const next = queue.shift();
          if (next) {
            yield next;
            if (next.finished) return;
            continue;
          }
          if (final) return;
          await new Promise<void>((r) => {
            wake = r;
          });
        }
      },
    };
  }

  abort(requestId: string): void {
    const live = this.#live.get(requestId);
    if (!live) return;
    for (const o of live.outputs) if (o.finishReason === null) o.finishReason = 'abort';
    this.#finish(requestId, live);
  }

  stats(): EngineStats {
    return {
      numRunning: this.#live.size,
      numWaiting: 0,
      numFreeBlocks: this.totalBlocks - this.#live.size,
      numTotalBlocks: this.totalBlocks,
      kvCacheUsage: this.#live.size / this.totalBlocks,
      prefixCacheQueries: 0,
      prefixCacheHits: 0,
      numPreemptions: 0,
      promptTokensTotal: 0,
      generationTokensTotal: 0,
    };
  }

  async shutdown(): Promise<void> {
    for (const id of [...this.#live.keys()]) this.abort(id);
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#step();
      if (this.#live.size > 0) this.#schedule();
    }, this.opts.stepMs ?? 1);
  }

  #step(): void {
    for (const [id, live] of [...this.#live]) {
      const p = live.input.params;
      for (const o of live.outputs) {
        o.newTokenIds = [];
        o.newText = '';
        if (o.finishReason !== null) continue;
        const shift = (p.seed ?? 0) + o.index;
        const token = 97 + ((o.tokenIds.length + shift) % 26);
        o.tokenIds.push(token);
        o.newTokenIds = [token];
        const text = o.text + String.fromCharCode(token);
        const stop = p.stop.find((s) => text.endsWith(s));
        if (stop) {
          o.finishReason = 'stop';
          o.stopReason = stop;
          o.newText = text.slice(o.text.length, text.length - stop.length);
          o.text = text.slice(0, text.length - stop.length);
        } else {
          o.newText = String.fromCharCode(token);
          o.text = text;
          if (o.tokenIds.length >= p.maxTokens) o.finishReason = 'length';
        }
        if (p.logprobs !== undefined) {
          o.logprobs = [{ tokenId: token, logprob: -0.5, topLogprobs: [{ tokenId: token, logprob: -0.5 }] }];
        }
      }
      if (live.outputs.every((o) => o.finishReason !== null)) this.#finish(id, live);
      else this.#emit(live, id, false);
    }
  }

  #emit(live: Live, requestId: string, finished: boolean): void {
    const out: RequestOutput = {
      requestId,
      promptTokenIds: [...live.input.promptTokenIds],
      outputs: live.outputs.map((o) => ({ ...o, tokenIds: [...o.tokenIds] })),
      finished,
      metrics: {
        arrivalTime: live.input.arrivalTime ?? Date.now(),
        firstTokenTime: Date.now(),
        numCachedPromptTokens: 0,
      },
    };
    live.push(out);
    this.emitter.emit('output', out);
    if (finished) this.emitter.emit('finished', out);
  }

  #finish(requestId: string, live: Live): void {
    this.#live.delete(requestId);
    this.#emit(live, requestId, true);
  }
}
