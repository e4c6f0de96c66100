// Token accounting of a finished API request: prompt tokens count once per prompt (not per choice),
// completion tokens are every choice's generated tokens, and cached tokens are those the prefix
// cache served.

import type { RequestOutput } from '@flashserve/core';
import type { Usage } from '../openai/types.js';

export function usageOf(finals: readonly RequestOutput[]): Usage {
  let prompt = 0;
  let completion = 0;
  let cached = 0;
  for (const f of finals) {
    prompt += f.promptTokenIds.length;
    cached += f.metrics.numCachedPromptTokens;
    for (const c of f.outputs) completion += c.tokenIds.length;
  }
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
  };
}
