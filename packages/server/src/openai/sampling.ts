// Turns a validated request body into the engine's SamplingParams, applying OpenAI's defaults and the
// checks a schema cannot express (lengths against the model's context, field combinations).

import type { SamplingParams } from '@flashserve/core';
import { requestInvalid, requestPromptTooLong } from '../errors.js';
import type { ChatCompletionRequest, CompletionRequest, SamplingRequestFields } from './types.js';

/** Values for fields a request leaves out, taken from the model's generation_config.json as vLLM does
 * (`--generation-config auto`); empty means OpenAI's defaults. */
export interface SamplingDefaults {
  readonly temperature?: number;
  readonly topP?: number;
  readonly topK?: number;
  readonly repetitionPenalty?: number;
}

export interface SamplingContext {
  /** Longest prompt + output the server allows. */
  readonly maxModelLen: number;
  readonly samplingDefaults: SamplingDefaults;
}

function stopList(stop: SamplingRequestFields['stop']): string[] {
  if (stop === undefined || stop === null) return [];
  return typeof stop === 'string' ? [stop] : [...stop];
}

function common(
  req: SamplingRequestFields,
  maxTokens: number,
  logprobs: number | undefined,
  defaults: SamplingDefaults,
): SamplingParams {
  const topK = req.top_k ?? defaults.topK ?? -1;
  const params: SamplingParams = {
    maxTokens,
    temperature: req.temperature ?? defaults.temperature ?? 1,
    topP: req.top_p ?? defaults.topP ?? 1,
    topK: topK === 0 ? -1 : topK,
    minP: req.min_p ?? 0,
    presencePenalty: req.presence_penalty ?? 0,
    frequencyPenalty: req.frequency_penalty ?? 0,
    repetitionPenalty: req.repetition_penalty ?? defaults.repetitionPenalty ?? 1,
    n: req.n ?? 1,
    stop: stopList(req.stop),
    stopTokenIds: req.stop_token_ids ?? [],
    ignoreEos: req.ignore_eos ?? false,
    skipSpecialTokens: req.skip_special_tokens ?? true,
  };
  if (req.seed !== undefined && req.seed !== null) params.seed = req.seed;
  if (req.logit_bias !== undefined && req.logit_bias !== null) {
    const bias = new Map<number, number>();
    for (const [key, value] of Object.entries(req.logit_bias)) bias.set(Number(key), value);
    if (bias.size > 0) params.logitBias = bias;
  }
  if (logprobs !== undefined) params.logprobs = logprobs;
  if (req.prompt_logprobs !== undefined && req.prompt_logprobs !== null) {
    if (req.stream === true) {
      throw withParam(requestInvalid('prompt_logprobs is not supported when streaming'), 'prompt_logprobs');
    }
    params.promptLogprobs = req.prompt_logprobs;
  }
  if (req.min_tokens !== undefined && req.min_tokens !== null) {
    if (req.min_tokens > maxTokens) {
      const msg = `min_tokens (${req.min_tokens}) must not exceed max_tokens (${maxTokens})`;
      throw withParam(requestInvalid(msg), 'min_tokens');
    }
    params.minTokens = req.min_tokens;
  }
  return params;
}

function checkLength(
  promptLens: readonly number[],
  maxTokens: number,
  limits: SamplingContext,
  param: string,
): void {
  for (const len of promptLens) {
    if (len + maxTokens > limits.maxModelLen) {
      throw withParam(requestPromptTooLong(limits.maxModelLen, len, maxTokens), param);
    }
  }
}

/** Sets OpenAI's `param` on an error built by a constructor that has no fixed one. */
export function withParam<E extends Error>(err: E, param: string): E {
  return Object.assign(err, { param });
}

/** /v1/completions: max_tokens defaults to 16 (OpenAI's legacy default). */
export function completionSamplingParams(
  req: CompletionRequest,
  promptLens: readonly number[],
  limits: SamplingContext,
): SamplingParams {
  const maxTokens = req.max_tokens ?? 16;
  checkLength(promptLens, maxTokens, limits, 'prompt');
  const logprobs = req.logprobs ?? undefined;
  const params = common(req, maxTokens, logprobs, limits.samplingDefaults);
  if (req.echo === true && logprobs !== undefined) {
    // The echoed prompt's tokens come with logprobs too (OpenAI's legacy behaviour): the engine
    // computes them as prompt logprobs, with as many alternatives as either field asks for.
    params.promptLogprobs = Math.max(logprobs, params.promptLogprobs ?? 0);
  }
  return params;
}

/** /v1/chat/completions: with no limit given, a choice may fill the rest of the context (as vLLM). */
export function chatSamplingParams(
  req: ChatCompletionRequest,
  promptLen: number,
  limits: SamplingContext,
): SamplingParams {
  const asked = req.max_completion_tokens ?? req.max_tokens ?? undefined;
  const maxTokens = asked ?? Math.max(1, limits.maxModelLen - promptLen);
  checkLength([promptLen], maxTokens, limits, 'messages');
  const top = req.top_logprobs ?? undefined;
  if (top !== undefined && req.logprobs !== true) {
    throw withParam(requestInvalid('top_logprobs needs logprobs: true'), 'top_logprobs');
  }
  return common(req, maxTokens, req.logprobs === true ? (top ?? 0) : undefined, limits.samplingDefaults);
}
