// A byte-level tokenizer for tests: ids 0..255 are bytes, 256 is BOS, 257 is EOS. Incomplete UTF-8
// decodes to U+FFFD, as the Tokenizer contract requires.

import type { ChatMessage, Tokenizer } from '../../src/engine/tokenizer.js';

export const BOS = 256;
export const EOS = 257;

export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 258;
  readonly eosTokenIds = [EOS];
  readonly specialTokenIds: ReadonlySet<number> = new Set([BOS, EOS]);
  readonly #decoder = new TextDecoder('utf-8', { fatal: false });
  readonly #encoder = new TextEncoder();
  /** How many times decode ran (to check detokenization stays incremental). */
  decodeCalls = 0;

  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] {
    const ids = Array.from(this.#encoder.encode(text));
    return options?.addSpecialTokens ? [BOS, ...ids] : ids;
  }

  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string {
    this.decodeCalls++;
    let out = '';
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length > 0) out += this.#decoder.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (const id of ids) {
      if (id < 256) {
        bytes.push(id);
        continue;
      }
      flush();
      if (!options?.skipSpecialTokens) out += id === BOS ? '<s>' : '</s>';
    }
    flush();
    return out;
  }

  applyChatTemplate(messages: readonly ChatMessage[]): string {
    return messages.map((m) => `${m.role}: ${m.content}\n`).join('');
  }
}
