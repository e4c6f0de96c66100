// Checks a request at addRequest, before it touches any queue: every problem is a 400 that names the
// field, so the server can answer OpenAI-style and nothing else happens.

import { requestParamInvalid, requestPromptEmpty, requestTooLong } from '../errors.js';
import type { SamplingParams } from './protocol.js';

export interface RequestLimits {
  readonly vocabSize: number;
  readonly maxModelLen: number;
  readonly maxNumSeqs: number;
  readonly hasTokenizer: boolean;
  readonly maxLogprobs: number;
}

export function validateRequest(
  promptTokenIds: readonly number[],
  p: SamplingParams,
  lim: RequestLimits,
): void {
  if (promptTokenIds.length === 0) throw requestPromptEmpty();
  for (const t of promptTokenIds) {
    if (!Number.isInteger(t) || t < 0 || t >= lim.vocabSize) {
      throw requestParamInvalid('prompt', `token id ${t} is outside the vocabulary [0, ${lim.vocabSize})`);
    }
  }
  integer(p.maxTokens, 'max_tokens', 1);
  if (promptTokenIds.length + p.maxTokens > lim.maxModelLen) {
    throw requestTooLong(lim.maxModelLen, promptTokenIds.length, p.maxTokens);
  }
  finite(p.temperature, 'temperature', 0);
  finite(p.topP, 'top_p', Number.MIN_VALUE, 1);
  if (!Number.isInteger(p.topK) || p.topK < -1) {
    throw requestParamInvalid('top_k', `must be -1 (off), 0 (off) or a positive integer, got ${p.topK}`);
  }
  finite(p.minP, 'min_p', 0, 1);
  finite(p.presencePenalty, 'presence_penalty', -2, 2);
  finite(p.frequencyPenalty, 'frequency_penalty', -2, 2);
  finite(p.repetitionPenalty, 'repetition_penalty', Number.MIN_VALUE);
  if (p.seed !== undefined && !Number.isSafeInteger(p.seed)) {
    throw requestParamInvalid('seed', `must be a safe integer, got ${p.seed}`);
  }
  integer(p.n, 'n', 1, lim.maxNumSeqs);
  if (!Array.isArray(p.stop) || p.stop.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw requestParamInvalid('stop', 'must be a list of non-empty strings');
  }
  if (p.stop.length > 0 && !lim.hasTokenizer) {
    throw requestParamInvalid('stop', 'stop strings need a tokenizer; this engine runs on token ids only');
  }
  if (!Array.isArray(p.stopTokenIds))
    throw requestParamInvalid('stop_token_ids', 'must be a list of token ids');
  for (const t of p.stopTokenIds) integer(t, 'stop_token_ids', 0, lim.vocabSize - 1);
  if (p.logprobs !== undefined) integer(p.logprobs, 'logprobs', 0, lim.maxLogprobs);
  if (p.promptLogprobs !== undefined) integer(p.promptLogprobs, 'prompt_logprobs', 0, lim.maxLogprobs);
  if (p.minTokens !== undefined) integer(p.minTokens, 'min_tokens', 0, p.maxTokens);
  if (p.logitBias !== undefined) {
    if (!(p.logitBias instanceof Map))
      throw requestParamInvalid('logit_bias', 'must map token ids to biases');
    for (const [t, bias] of p.logitBias) {
      if (!Number.isInteger(t) || t < 0 || t >= lim.vocabSize) {
        throw requestParamInvalid(
          'logit_bias',
          `token id ${t} is outside the vocabulary [0, ${lim.vocabSize})`,
        );
      }
      finite(bias, 'logit_bias', -100, 100);
    }
  }
}

function integer(v: number, param: string, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw requestParamInvalid(param, `must be an integer ${range}, got ${v}`);
  }
}

function finite(v: number, param: string, min: number, max = Number.POSITIVE_INFINITY): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    const range = max === Number.POSITIVE_INFINITY ? `>= ${min}` : `in [${min}, ${max}]`;
    throw requestParamInvalid(param, `must be a number ${range}, got ${v}`);
  }
}
