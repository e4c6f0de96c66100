// The engine's public protocol: what a caller (the HTTP server, a benchmark, a test) hands to
// `Engine.addRequest` and what comes back. Plain data only; the Engine class lives in engine.ts.
//
// Units: counts are tokens unless a name says otherwise; times are milliseconds since the epoch
// (Date.now()).

import type { Sampler } from '../sampling/sampler.js';
import type { Model } from './model.js';
import type { Tokenizer } from './tokenizer.js';

/** How one request samples and when it stops. Build with `defaultSamplingParams` so that every field
 * has its OpenAI default. */
export interface SamplingParams {
  /** Most tokens to generate per choice (finish reason "length" when reached). */
  maxTokens: number;
  /** 0 means greedy (argmax); otherwise logits are divided by it before softmax. */
  temperature: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability sums to at least topP (1 = off). */
  topP: number;
  /** Keep only the topK most likely tokens; -1 or 0 = off. */
  topK: number;
  /** Drop tokens whose probability is below minP times the most likely token's (0 = off). */
  minP: number;
  /** Subtracted once from the logit of every token already generated (OpenAI semantics). */
  presencePenalty: number;
  /** Subtracted from a token's logit once per time it was generated. */
  frequencyPenalty: number;
  /** >1 discourages tokens seen in the prompt or output (CTRL/HF semantics); 1 = off. */
  repetitionPenalty: number;
  /** Seeds this request's own random stream: same seed, same output whatever else is batched. */
  seed?: number;
  /** Number of choices; they share the prompt's KV blocks. */
  n: number;
  /** Strings that end a choice; the matched text is never emitted. */
  stop: string[];
  /** Token ids that end a choice (finish reason "stop", stopReason the id). The id is kept in tokenIds
   * but its text is not emitted. */
  stopTokenIds: number[];
  /** Keep generating past the tokenizer's EOS ids. */
  ignoreEos: boolean;
  /** Top alternatives per generated token: 0 = the sampled token's logprob only, undefined = none. */
  logprobs?: number;
  /** Logprobs of the prompt's own tokens (vLLM's `prompt_logprobs`, OpenAI's `echo` with `logprobs`):
   * each prompt token's log-probability given the tokens before it, plus this many top alternatives
   * (0 = the token's own only); undefined = none. Such a request computes its whole prompt: prefix
   * cache hits are skipped, since cached blocks hold KV but no logits. */
  promptLogprobs?: number;
  /** Drop special tokens from the text. */
  skipSpecialTokens: boolean;
  /** EOS and stop token ids are ignored until this many tokens were generated. */
  minTokens?: number;
  /** Added to these tokens' logits before sampling (OpenAI's `logit_bias`, each in [-100, 100]);
   * logprobs stay those of the raw logits, as the penalties leave them. */
  logitBias?: ReadonlyMap<number, number>;
}

/** OpenAI's defaults, overridden field by field. */
export function defaultSamplingParams(overrides: Partial<SamplingParams> = {}): SamplingParams {
  return {
    maxTokens: 16,
    temperature: 1,
    topP: 1,
    topK: -1,
    minP: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repetitionPenalty: 1,
    n: 1,
    stop: [],
    stopTokenIds: [],
    ignoreEos: false,
    skipSpecialTokens: true,
    ...overrides,
  };
}

export interface EngineOptions {
  model: Model;
  /** Absent: outputs carry token ids only (text stays ""), and EOS is unknown unless stopTokenIds say. */
  tokenizer?: Tokenizer;
  /** Tokens per KV block. */
  blockSize: number;
  /** Size of the KV pool in blocks; give this or kvCacheMemoryBytes. */
  numBlocks?: number;
  /** Memory budget for the KV pool; divided by model.kvCacheBytesPerBlock(blockSize). */
  kvCacheMemoryBytes?: number;
  /** Most requests (counting each of the n choices) in one step. */
  maxNumSeqs: number;
  /** Token budget of one step (prefill chunks plus one token per decoding sequence). */
  maxNumBatchedTokens: number;
  /** Longest prompt + output allowed. */
  maxModelLen: number;
  /** Waiting-queue limit; beyond it addRequest throws engineOverloaded (503). Default: unlimited. */
  maxWaitingRequests?: number;
  /** Reuse cached KV blocks for shared prompt prefixes. Default true. */
  enablePrefixCaching?: boolean;
  /** Largest `logprobs` (top alternatives per token) a request may ask for. Default 20 (OpenAI's). */
  maxLogprobs?: number;
  /** Replaces the host sampler (e.g. with a GPU one). */
  sampler?: Sampler;
  /** Batch sizes (ascending) decode steps are padded to and run at through `model.device.graph`
   * (CUDA graphs): a step whose every request decodes one token and samples, with at most the
   * largest size of requests, is padded with dummy rows (slot -1: no KV written; their logits rows
   * are ignored) to the next size. Absent, empty, or a device without `graph`: every step eager. */
  decodeGraphBatchSizes?: readonly number[];
  /** Async scheduling (vLLM's --async-scheduling): a decode step that only continues the previous
   * step's requests is launched before that step's tokens are read back; its input ids come from the
   * previous sampling on the device, and the host's work for the previous step (stops, detokenizing,
   * streaming) overlaps the device running this one. A request that stopped is computed one step too
   * many and the extra token dropped. Takes effect only where the model reads device token ids
   * (Model.readsDeviceTokenIds) and the sampler has sampleAsync; off by default. */
  asyncScheduling?: boolean;
}

export interface AddRequestInput {
  /** Generated when absent. Must be unique among live requests. */
  requestId?: string;
  promptTokenIds: readonly number[];
  params: SamplingParams;
  /** Defaults to Date.now(). */
  arrivalTime?: number;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface TokenLogprob {
  tokenId: number;
  /** Natural-log probability under the distribution actually sampled from (after temperature and
   * penalties, before top-k/top-p/min-p truncation), as vLLM reports it. */
  logprob: number;
  /** The `logprobs` most likely tokens, best first. */
  topLogprobs: { tokenId: number; logprob: number }[];
  /** 1 + the number of tokens more likely than this one (vLLM's rank); set for prompt logprobs. */
  rank?: number;
}

export interface CompletionOutput {
  /** Choice index in [0, n). */
  index: number;
  /** Every generated token id so far.
   * NOTE: this is the choice's own growing array, shared by all its outputs (copying it every step
   * would cost O(length) per request per step); copy it to keep a snapshot of an intermediate output.
   * In a finished output it no longer changes. */
  tokenIds: number[];
  /** All text so far (stop strings and held-back partial characters excluded). */
  text: string;
  /** Tokens generated this step. */
  newTokenIds: number[];
  /** Text that became safe to emit this step. */
  newText: string;
  /** One entry per new token, when params.logprobs is set. */
  logprobs?: TokenLogprob[];
  finishReason: FinishReason | null;
  /** The stop string or stop token id that ended the choice. */
  stopReason?: string | number;
}

export interface RequestMetrics {
  arrivalTime: number;
  firstTokenTime?: number;
  finishedTime?: number;
  /** Prompt tokens served from the prefix cache on (first) admission. */
  numCachedPromptTokens: number;
}

export interface RequestOutput {
  requestId: string;
  promptTokenIds: number[];
  /** One per choice (n of them); a choice that did not advance this step has empty new fields. */
  outputs: CompletionOutput[];
  /** With params.promptLogprobs: one entry per prompt token, null for the first (nothing precedes
   * it). Present on every output from the one that carries the first generated token on; the same
   * array each time. */
  promptLogprobs?: (TokenLogprob | null)[];
  /** All choices finished. */
  finished: boolean;
  metrics: RequestMetrics;
  /** Set when the request failed (model error, shutdown); finished is true and finishReason "abort". */
  error?: Error;
}

export interface RequestHandle extends AsyncIterable<RequestOutput> {
  readonly requestId: string;
  abort(): void;
  /** Resolves with the final output; rejects if the request failed with an error. */
  done(): Promise<RequestOutput>;
}

export interface EngineStats {
  /** Requests (not choices) with at least one running sequence. */
  numRunning: number;
  numWaiting: number;
  numFreeBlocks: number;
  numTotalBlocks: number;
  /** Fraction of blocks in use, 0..1. */
  kvCacheUsage: number;
  /** Prompt tokens looked up in the prefix cache. */
  prefixCacheQueries: number;
  /** Prompt tokens found in the prefix cache. */
  prefixCacheHits: number;
  numPreemptions: number;
  promptTokensTotal: number;
  generationTokensTotal: number;
}

/** Emitted after every step. */
export interface StepStats {
  /** Sequences scheduled this step. */
  numScheduledSeqs: number;
  numPrefillTokens: number;
  numDecodeTokens: number;
  numPreempted: number;
  /** Wall time of the whole step. */
  stepMs: number;
  /** Part of stepMs spent inside model.forward. On an asynchronous device this is only the time to
   * enqueue the work; waiting for it then shows in samplingMs. */
  modelMs: number;
  /** Part of stepMs spent in the sampler (including reading the logits back). */
  samplingMs: number;
  /** The padded batch size when the step ran through a decode graph; absent when it ran eagerly. */
  graphBatchSize?: number;
}

export interface EngineEvents {
  output: (out: RequestOutput) => void;
  finished: (out: RequestOutput) => void;
  step: (stats: StepStats) => void;
  /** A decode graph failed to capture or replay; steps of that size run eagerly from then on. */
  graphFallback: (info: { batchSize: number; error: Error }) => void;
  error: (err: Error, requestId?: string) => void;
}
