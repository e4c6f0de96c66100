// Prompts to token ids: the four shapes of a completions `prompt`, and chat messages rendered through
// the model's chat template. Without a tokenizer (--skip-tokenizer-init) only token ids are accepted.

import type { ChatMessage, Tokenizer } from '@flashserve/core';
import { requestInvalid, requestNoTokenizer } from '../errors.js';
import { withParam } from './sampling.js';
import type { ChatMessageParam, PromptInput } from './types.js';

/** One prompt of a request: its token ids and, when it came as text, that text (for `echo`). */
export interface PreparedPrompt {
  readonly tokenIds: number[];
  readonly text: string | undefined;
}

function isTokenIds(p: unknown): p is number[] {
  return Array.isArray(p) && p.length > 0 && typeof p[0] === 'number';
}

function encode(tokenizer: Tokenizer | undefined, text: string, param: string): number[] {
  if (!tokenizer) throw withParam(requestNoTokenizer('a text prompt'), param);
  const ids = tokenizer.encode(text, { addSpecialTokens: true });
  if (ids.length === 0) throw withParam(requestInvalid(`${param} is empty`), param);
  return ids;
}

/** Splits a completions `prompt` into one prepared prompt per entry (a batch). */
export function preparePrompts(prompt: PromptInput, tokenizer: Tokenizer | undefined): PreparedPrompt[] {
  if (typeof prompt === 'string') return [{ tokenIds: encode(tokenizer, prompt, 'prompt'), text: prompt }];
  if (isTokenIds(prompt)) return [{ tokenIds: [...prompt], text: undefined }];
  return (prompt as (string | number[])[]).map((p, i) =>
    typeof p === 'string'
      ? { tokenIds: encode(tokenizer, p, `prompt[${i}]`), text: p }
      : { tokenIds: [...p], text: undefined },
  );
}

/** Text parts are joined with newlines, as vLLM does. */
export function messageText(content: ChatMessageParam['content']): string {
  return typeof content === 'string' ? content : content.map((part) => part.text).join('\n');
}

/** OpenAI's newer "developer" role is the system role under another name. */
export function toChatMessages(messages: readonly ChatMessageParam[]): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: messageText(m.content),
  }));
}

/** Renders chat messages with the model's template and tokenizes the result. The template adds
 * the BOS token itself, so encoding adds no special tokens. */
export function prepareChat(
  messages: readonly ChatMessageParam[],
  tokenizer: Tokenizer | undefined,
  addGenerationPrompt: boolean,
): PreparedPrompt {
  if (!tokenizer) throw withParam(requestNoTokenizer('chat completion'), 'messages');
  let text: string;
  try {
    text = tokenizer.applyChatTemplate(toChatMessages(messages), { addGenerationPrompt });
  } catch (err) {
    throw withParam(requestInvalid(`the chat template failed: ${(err as Error).message}`), 'messages');
  }
  return { tokenIds: tokenizer.encode(text, { addSpecialTokens: false }), text };
}
