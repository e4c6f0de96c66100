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

/** Detokenizes the choice's newest token into its text (cut at a matched stop string) and says
 * whether the choice stops. `tokenId` was already appended to the choice's tokens. */
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
    const prevLength = c.text.length;
    const delta = c.detokenizer.push(tokenId);
    if (delta.length > 0) {
      c.text += delta;
      const match = pastMin ? c.request.stopMatcher.find(c.text, prevLength) : undefined;
      if (match !== undefined) {
        c.text = c.text.slice(0, match.at);
        return { reason: 'stop', stopReason: match.stop };
      }
    }
  }
  if (numOut >= p.maxTokens || c.numTokens >= maxModelLen) return { reason: 'length', stopReason: undefined };
  return undefined;
}
