// Token accounting of a finished API request: prompt tokens count once per prompt (not per choice),
// completion tokens are every choice's generated tokens, and cached tokens are those the prefix
// cache served.

import type { RequestOutput } from '@flashserve/core';
import type { SamplingRequestFields, Usage } from '../openai/types.js';

/** How a stream reports usage (`stream_options`): `final` adds a last chunk with the whole request's;
 * `continuous` (vLLM's continuous_usage_stats, only with include_usage) gives every chunk its
 * choice's usage so far: its prompt's tokens and the tokens the choice has generated. */
export interface StreamUsage {
  readonly final: boolean;
  readonly continuous: boolean;
}

export function streamUsageOf(options: SamplingRequestFields['stream_options']): StreamUsage {
  const final = options?.include_usage === true;
  return { final, continuous: final && options?.continuous_usage_stats === true };
}

function usage(prompt: number, completion: number, cached: number): Usage {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
  };
}

/** A streamed chunk's usage with continuous_usage_stats: its prompt and its choice's tokens so far. */
export function choiceUsage(
  output: RequestOutput | undefined,
  promptTokens: number,
  completionTokens: number,
): Usage {
  return usage(promptTokens, completionTokens, output?.metrics.numCachedPromptTokens ?? 0);
}

export function usageOf(finals: readonly RequestOutput[]): Usage {
  let prompt = 0;
  let completion = 0;
  let cached = 0;
  for (const f of finals) {
    prompt += f.promptTokenIds.length;
    cached += f.metrics.numCachedPromptTokens;
    for (const c of f.outputs) completion += c.tokenIds.length;
  }
  return usage(prompt, completion, cached);
}
