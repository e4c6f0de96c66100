// Engine logprobs to OpenAI's two wire formats: the legacy completions one (parallel arrays) and the
// chat one (an entry per token with its bytes).
//
// NOTE: a logprob of -Infinity would serialise as null, which clients reject; like vLLM we clamp to
// -9999. Token strings of byte-level BPE pieces that are not whole characters decode to U+FFFD; the
// `bytes` field is what tells the client the exact bytes.

import type { Tokenizer, TokenLogprob } from '@flashserve/core';
import type { ChatTokenLogprob, CompletionLogprobs, PromptLogprobsWire } from './types.js';

const FLOOR = -9999;
const clamp = (lp: number) => (Number.isFinite(lp) ? lp : lp > 0 ? 0 : FLOOR);

export type TokenText = (tokenId: number) => string;

/** How a token id is shown: its decoded text, or `token_id:<id>` without a tokenizer (vLLM's form). */
export function tokenTextOf(tokenizer: Tokenizer | undefined): TokenText {
  if (!tokenizer) return (id) => `token_id:${id}`;
  return (id) => tokenizer.decode([id], { skipSpecialTokens: false });
}

/** Accumulates completions-style logprobs across stream steps (text offsets keep counting). */
export class CompletionLogprobsBuilder {
  readonly #tokenText: TokenText;
  #offset: number;

  constructor(tokenText: TokenText, startOffset: number) {
    this.#tokenText = tokenText;
    this.#offset = startOffset;
  }

  /** The logprobs of `entries` (one step's tokens, or all of them). Each top_logprobs entry holds
   * the alternatives and the sampled token itself, as vLLM reports them. */
  build(entries: readonly TokenLogprob[]): CompletionLogprobs {
    const top: Record<string, number>[] = [];
    const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: top, text_offset: [] };
    for (const e of entries) {
      const text = this.#tokenText(e.tokenId);
      out.tokens.push(text);
      out.token_logprobs.push(clamp(e.logprob));
      out.text_offset.push(this.#offset);
      this.#offset += text.length;
      const alternatives: Record<string, number> = {};
      for (const t of e.topLogprobs) alternatives[this.#tokenText(t.tokenId)] = clamp(t.logprob);
      alternatives[text] = clamp(e.logprob);
      top.push(alternatives);
    }
    return out;
  }
}

/**
 * The echoed prompt's part of completions logprobs (echo with logprobs): one entry per prompt token,
 * the first with null logprob and alternatives (nothing precedes it); `numTop` alternatives each.
 * Offsets count from 0 over the prompt tokens' texts.
 */
export function echoedPromptLogprobs(
  promptTokenIds: readonly number[],
  entries: readonly (TokenLogprob | null)[],
  numTop: number,
  tokenText: TokenText,
): CompletionLogprobs {
  // A prompt is never empty (the engine refuses one), so token 0 exists.
  const first = tokenText(promptTokenIds[0]!);
  const rest = new CompletionLogprobsBuilder(tokenText, first.length).build(
    entries.slice(1).map((e, i) => ({
      tokenId: e?.tokenId ?? promptTokenIds[i + 1]!,
      logprob: e?.logprob ?? Number.NEGATIVE_INFINITY,
      topLogprobs: (e?.topLogprobs ?? []).slice(0, numTop),
    })),
  );
  return {
    tokens: [first, ...rest.tokens],
    token_logprobs: [null, ...rest.token_logprobs],
    top_logprobs: [null, ...(rest.top_logprobs ?? [])],
    text_offset: [0, ...rest.text_offset],
  };
}

/** Completions logprobs of `a`'s tokens then `b`'s. */
export function concatCompletionLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: [...(a.top_logprobs ?? []), ...(b.top_logprobs ?? [])],
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}

/** vLLM's `prompt_logprobs` field: per prompt token, token id -> logprob, rank, text, for the token
 * itself and its alternatives (ranks of alternatives are their places in the top list). */
export function promptLogprobsWire(
  entries: readonly (TokenLogprob | null)[],
  tokenText: TokenText,
): PromptLogprobsWire {
  return entries.map((e) => {
    if (e === null) return null;
    const out: NonNullable<PromptLogprobsWire[number]> = {};
    e.topLogprobs.forEach((t, i) => {
      out[String(t.tokenId)] = {
        logprob: clamp(t.logprob),
        rank: i + 1,
        decoded_token: tokenText(t.tokenId),
      };
    });
    out[String(e.tokenId)] = {
      logprob: clamp(e.logprob),
      rank: e.rank ?? 1,
      decoded_token: tokenText(e.tokenId),
    };
    return out;
  });
}

const bytesOf = (text: string) => [...Buffer.from(text, 'utf8')];

export function chatLogprobs(entries: readonly TokenLogprob[], tokenText: TokenText): ChatTokenLogprob[] {
  return entries.map((e) => {
    const token = tokenText(e.tokenId);
    return {
      token,
      logprob: clamp(e.logprob),
      bytes: bytesOf(token),
      top_logprobs: e.topLogprobs.map((t) => {
        const alt = tokenText(t.tokenId);
        return { token: alt, logprob: clamp(t.logprob), bytes: bytesOf(alt) };
      }),
    };
  });
}
