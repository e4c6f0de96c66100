// What ends a choice after it took a new token, in vLLM's order: stop token ids, then EOS (unless
// ignoreEos), then stop strings in the newly detokenized text, then length. Before minTokens only the
// length limit applies (the sampler also masks EOS and stop ids until then).

import type { Choice } from './choice.js';
import type { FinishReason } from './protocol.js';

export interface StopVerdict {
  readonly reason: FinishReason;
  /** The stop token id or stop string; undefined for EOS and length. */
  readonly stopReason: string | number | undefined;
}

/** Detokenizes the choice's newest token, emits what is safe to stream (nothing past a matched stop
 * string) and says whether the choice stops. `tokenId` was already appended to the choice's tokens.
 * Held-back text is the caller's to flush when the choice ends for another reason. */
export function appendTextAndCheckStop(
  c: Choice,
  tokenId: number,
  eosTokenIds: readonly number[],
  maxModelLen: number,
): StopVerdict | undefined {
  const p = c.request.params;
  const numOut = c.numOutputTokens;
  const pastMin = numOut >= (p.minTokens ?? 0);
  if (pastMin && p.stopTokenIds.includes(tokenId)) return { reason: 'stop', stopReason: tokenId };
  if (pastMin && !p.ignoreEos && eosTokenIds.includes(tokenId))
    return { reason: 'stop', stopReason: undefined };
  if (c.detokenizer !== undefined) {
    const delta = c.detokenizer.push(tokenId);
    if (delta.length > 0) {
      const matcher = c.request.stopMatcher;
      const window = c.heldText + delta;
      const match = pastMin && !matcher.isEmpty ? matcher.find(window) : undefined;
      if (match !== undefined) {
        c.heldText = '';
        c.emit(window.slice(0, match.at));
        return { reason: 'stop', stopReason: match.stop };
      }
      const hold = matcher.holdback(window);
      c.heldText = hold > 0 ? window.slice(window.length - hold) : '';
      c.emit(hold > 0 ? window.slice(0, window.length - hold) : window);
    }
  }
  if (numOut >= p.maxTokens || c.numTokens >= maxModelLen) return { reason: 'length', stopReason: undefined };
  return undefined;
}
