// Incremental detokenization that never emits half a character.
//
// Decoding token by token is wrong for byte-level and SentencePiece vocabularies: a character may
// span tokens, and a token's text may depend on its left neighbour (leading-space handling). So we
// decode a short window of recent tokens and emit the part of its text not emitted yet, only when
// the text does not end in U+FFFD, which the Tokenizer contract returns for an incomplete UTF-8
// sequence. The window starts on a few prompt tokens so the first output token has left context.
//
// Cost: one decode of at most MAX_WINDOW tokens per token, plus one more each time the window
// slides (every MAX_WINDOW - KEEP tokens); decode calls dominate the engine's per-token text cost.
//
// NOTE: the text of a window is only ever compared with the text of the same window start, so a
// decoder that strips a leading space at the start of a decode never loses or duplicates text.

import type { Tokenizer } from './tokenizer.js';

/** Prompt tokens kept as left context for the first output token. */
const PROMPT_CONTEXT = 5;
/** The window slides once it holds this many tokens... */
const MAX_WINDOW = 12;
/** ...keeping this many as left context. */
const KEEP = 4;

export class IncrementalDetokenizer {
  readonly #tokenizer: Tokenizer;
  readonly #options: { skipSpecialTokens: boolean };
  /** The window: recent token ids, the first `#start` of them only context. */
  #ids: number[];
  /** Length of the window's decoded text that was already emitted (or is prompt context). */
  #emitted: number;

  constructor(tokenizer: Tokenizer, promptTokenIds: readonly number[], skipSpecialTokens: boolean) {
    this.#tokenizer = tokenizer;
    this.#options = { skipSpecialTokens };
    this.#ids = promptTokenIds.slice(Math.max(0, promptTokenIds.length - PROMPT_CONTEXT));
    this.#emitted = this.#decodedLength(this.#ids);
  }

  /** Appends one token; returns the text that became complete (often "", sometimes several tokens'). */
  push(tokenId: number): string {
    this.#ids.push(tokenId);
    const text = this.#ids.length === 0 ? '' : this.#tokenizer.decode(this.#ids, this.#options);
    if (text.endsWith('\uFFFD')) {
      // Wait for the rest of the character; a window of nothing but an unfinished character (or
      // invalid bytes) still has to slide eventually, which the check below does.
      if (this.#ids.length > 4 * MAX_WINDOW) return this.#slide(text);
      return '';
    }
    const delta = text.length > this.#emitted ? text.slice(this.#emitted) : '';
    this.#emitted = Math.max(this.#emitted, text.length);
    if (this.#ids.length >= MAX_WINDOW) {
      this.#ids = this.#ids.slice(this.#ids.length - KEEP);
      this.#emitted = this.#decodedLength(this.#ids);
    }
    return delta;
  }

  /** Gives up waiting on a window stuck on U+FFFD (invalid bytes): emits it as is and restarts. */
  #slide(text: string): string {
    const delta = text.length > this.#emitted ? text.slice(this.#emitted) : '';
    this.#ids = [];
    this.#emitted = 0;
    return delta;
  }

  #decodedLength(ids: readonly number[]): number {
    return ids.length === 0 ? 0 : this.#tokenizer.decode(ids, this.#options).length;
  }
}
