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
  /** Renders messages with the model's chat template; throws a clear error if there is none. */
  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
}
