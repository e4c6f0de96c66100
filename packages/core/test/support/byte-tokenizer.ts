// A byte-level tokenizer for tests: ids 0..255 are bytes, 256 is BOS, 257 is EOS. Incomplete UTF-8
// decodes to U+FFFD, as the Tokenizer contract requires. With `byteStream` it also offers tokenBytes()
// (the detokenizer's fast path); without, the engine uses its windowed decode.

import type { ChatMessage, Tokenizer } from '../../src/engine/tokenizer.js';

export const BOS = 256;
export const EOS = 257;

export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 258;
  readonly eosTokenIds = [EOS];
  readonly specialTokenIds: ReadonlySet<number> = new Set([BOS, EOS]);
  readonly #encoder = new TextEncoder();
  /** How many times decode ran (to check detokenization stays incremental). */
  decodeCalls = 0;
  readonly tokenBytes: ((id: number) => Uint8Array | undefined) | undefined;

  constructor(opts: { byteStream?: boolean } = {}) {
    const table = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    this.tokenBytes = opts.byteStream ? (id) => table[id] : undefined;
  }

  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] {
    const ids = Array.from(this.#encoder.encode(text));
    return options?.addSpecialTokens ? [BOS, ...ids] : ids;
  }

  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string {
    this.decodeCalls++;
    const bytes = Buffer.allocUnsafe(ids.length);
    let out = '';
    let n = 0;
    for (const id of ids) {
      if (id < 256) {
        bytes[n++] = id;
        continue;
      }
      out += bytes.toString('utf8', 0, n);
      n = 0;
      if (!options?.skipSpecialTokens) out += id === BOS ? '<s>' : '</s>';
    }
    // Buffer's UTF-8 decoding turns an incomplete trailing sequence into U+FFFD, as required.
    return out + bytes.toString('utf8', 0, n);
  }

  applyChatTemplate(messages: readonly ChatMessage[]): string {
    return messages.map((m) => `${m.role}: ${m.content}\n`).join('');
  }
}
