// Incremental detokenization that never emits half a character.
//
// Decoding token by token is wrong for byte-level and SentencePiece vocabularies: a character may
// span tokens, and a token's text may depend on its left neighbour (leading-space handling). So we
// decode a short window twice: the tokens already emitted since `prefixOffset` (their text is
// known), and the same window plus the new tokens. The difference is the new text, released only
// when it does not end in U+FFFD, which the Tokenizer contract returns for an incomplete UTF-8
// sequence. The window starts on a few prompt tokens so the first output token has left context.

import type { Tokenizer } from './tokenizer.js';

/** Prompt tokens kept as left context for the first output token. */
const PROMPT_CONTEXT = 5;

export class IncrementalDetokenizer {
  readonly #tokenizer: Tokenizer;
  readonly #skipSpecialTokens: boolean;
  readonly #ids: number[];
  #prefixOffset = 0;
  #readOffset: number;
  #prefixText: string;

  constructor(tokenizer: Tokenizer, promptTokenIds: readonly number[], skipSpecialTokens: boolean) {
    this.#tokenizer = tokenizer;
    this.#skipSpecialTokens = skipSpecialTokens;
    this.#ids = promptTokenIds.slice(Math.max(0, promptTokenIds.length - PROMPT_CONTEXT));
    this.#readOffset = this.#ids.length;
    this.#prefixText = this.#decode(this.#prefixOffset, this.#readOffset);
  }

  /** Appends one token; returns the text that became complete (often "", sometimes several tokens'). */
  push(tokenId: number): string {
    this.#ids.push(tokenId);
    const text = this.#decode(this.#prefixOffset, this.#ids.length);
    if (text.length <= this.#prefixText.length || text.endsWith('\uFFFD')) return '';
    const delta = text.slice(this.#prefixText.length);
    this.#prefixOffset = this.#readOffset;
    this.#readOffset = this.#ids.length;
    this.#prefixText = this.#decode(this.#prefixOffset, this.#readOffset);
    // The window's older ids are never decoded again; drop them now and then.
    if (this.#prefixOffset > 256) {
      this.#ids.splice(0, this.#prefixOffset);
      this.#readOffset -= this.#prefixOffset;
      this.#prefixOffset = 0;
    }
    return delta;
  }

  #decode(start: number, end: number): string {
    if (start >= end) return '';
    return this.#tokenizer.decode(this.#ids.slice(start, end), {
      skipSpecialTokens: this.#skipSpecialTokens,
    });
  }
}
