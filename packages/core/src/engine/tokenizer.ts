// The tokenizer contract the engine's detokenizer and the server use. The Hugging Face implementation
// lives in src/loader/; tests may use a tiny byte-level one.

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant' | 'tool';
  readonly content: string;
}

export interface Tokenizer {
  readonly vocabSize: number;
  /** Token ids that end generation unless the request says ignore_eos. */
  readonly eosTokenIds: readonly number[];
  /** Ids of special tokens (BOS/EOS/chat markers) that skip_special_tokens drops. */
  readonly specialTokenIds: ReadonlySet<number>;
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Decodes ids to text. Incomplete UTF-8 sequences decode to U+FFFD, which the incremental
   * detokenizer relies on to hold text back until a character is complete. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Optional fast path for incremental detokenization. Define it only when decoding is plain
   * concatenation of per-token bytes (byte-level BPE without space cleanup): it returns the UTF-8
   * bytes token `id` contributes, or undefined for a token that is not plain bytes (special and
   * added tokens, decoded through `decode`). A tokenizer whose text depends on neighbouring tokens
   * (SentencePiece's leading-space rule) must leave it undefined. */
  tokenBytes?(id: number): Uint8Array | undefined;
  /** Renders messages with the model's chat template; throws a clear error if there is none. */
  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
}
