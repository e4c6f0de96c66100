// Incremental detokenization that never emits half a character. Two strategies behind one
// interface, picked per tokenizer:
//
// - ByteStreamDetokenizer, when the tokenizer exposes tokenBytes(): each token's bytes go through a
//   streaming UTF-8 decoder, which holds an incomplete character back by itself. O(1) per token and
//   no decode() call (those cost microseconds each in @huggingface/tokenizers).
// - WindowDetokenizer otherwise: decoding token by token is wrong for byte-level and SentencePiece
//   vocabularies (a character may span tokens, a token's text may depend on its left neighbour), so
//   it decodes a short window of recent tokens and emits the part of its text not emitted yet, only
//   when that text does not end in U+FFFD, which the Tokenizer contract returns for an incomplete
//   UTF-8 sequence. The window starts on a few prompt tokens so the first output token has left
//   context. NOTE: a window's text is only compared with text decoded from the same window start,
//   so a decoder that strips a leading space at the start of a decode never loses or duplicates
//   text. Cost: one decode of at most MAX_WINDOW tokens per token, plus one each time it slides.

import type { Tokenizer } from './tokenizer.js';

export interface Detokenizer {
  /** Appends one generated token; returns the text that became complete (often "", sometimes
   * several tokens' worth). */
  push(tokenId: number): string;
}

export function createDetokenizer(
  tokenizer: Tokenizer,
  promptTokenIds: readonly number[],
  skipSpecialTokens: boolean,
): Detokenizer {
  return tokenizer.tokenBytes !== undefined
    ? new ByteStreamDetokenizer(tokenizer, skipSpecialTokens)
    : new WindowDetokenizer(tokenizer, promptTokenIds, skipSpecialTokens);
}

export class ByteStreamDetokenizer implements Detokenizer {
  readonly #tokenizer: Tokenizer;
  readonly #skipSpecialTokens: boolean;
  readonly #utf8 = new TextDecoder('utf-8', { fatal: false });

  constructor(tokenizer: Tokenizer, skipSpecialTokens: boolean) {
    this.#tokenizer = tokenizer;
    this.#skipSpecialTokens = skipSpecialTokens;
  }

  push(tokenId: number): string {
    const bytes = this.#tokenizer.tokenBytes?.(tokenId);
    if (bytes !== undefined) return this.#utf8.decode(bytes, { stream: true });
    if (this.#skipSpecialTokens && this.#tokenizer.specialTokenIds.has(tokenId)) return '';
    // A special or added token rendered as text. NOTE: bytes of a character left incomplete before
    // it stay pending in the decoder and come out after it (a byte-level model does not split a
    // character around a special token in practice).
    return this.#tokenizer.decode([tokenId], { skipSpecialTokens: this.#skipSpecialTokens });
  }
}

/** Prompt tokens kept as left context for the first output token. */
const PROMPT_CONTEXT = 5;
/** The window slides once it holds this many tokens... */
const MAX_WINDOW = 12;
/** ...keeping this many as left context. */
const KEEP = 4;

export class WindowDetokenizer implements Detokenizer {
  readonly #tokenizer: Tokenizer;
  readonly #options: { skipSpecialTokens: boolean };
  /** Recent token ids: left context followed by tokens whose text may not be emitted yet. */
  #ids: number[];
  /** Length of the window's decoded text already emitted (or belonging to the prompt context). */
  #emitted: number;

  constructor(tokenizer: Tokenizer, promptTokenIds: readonly number[], skipSpecialTokens: boolean) {
    this.#tokenizer = tokenizer;
    this.#options = { skipSpecialTokens };
    this.#ids = promptTokenIds.slice(Math.max(0, promptTokenIds.length - PROMPT_CONTEXT));
    this.#emitted = this.#decodedLength(this.#ids);
  }

  push(tokenId: number): string {
    this.#ids.push(tokenId);
    const text = this.#tokenizer.decode(this.#ids, this.#options);
    if (text.endsWith('\uFFFD')) {
      // Wait for the rest of the character. A window stuck on U+FFFD (invalid bytes rather than an
      // unfinished character) is emitted as is once it grows too long.
      if (this.#ids.length > 4 * MAX_WINDOW) return this.#restart(text);
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

  #restart(text: string): string {
    const delta = text.length > this.#emitted ? text.slice(this.#emitted) : '';
    this.#ids = [];
    this.#emitted = 0;
    return delta;
  }

  #decodedLength(ids: readonly number[]): number {
    return ids.length === 0 ? 0 : this.#tokenizer.decode(ids, this.#options).length;
  }
}
