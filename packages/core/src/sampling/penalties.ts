// Logit adjustments applied before temperature, in place on a scratch copy of one row.
//
// - repetition (CTRL / Hugging Face): every token seen in the prompt or output has its logit divided
//   by the penalty when positive, multiplied when negative;
// - frequency and presence (OpenAI): subtract frequency * count + presence * (count > 0) for tokens
//   generated so far (the prompt does not count);
// - logit bias (OpenAI): added to the listed tokens' logits;
// - bans last, so no bias lifts a banned token.

import type { SamplingRow } from './sampler.js';

export function applyPenalties(x: Float32Array, row: SamplingRow): void {
  const p = row.params;
  if (p.repetitionPenalty !== 1) {
    const r = p.repetitionPenalty;
    row.promptTokenSet ??= new Set(row.promptTokens);
    const seen = row.promptTokenSet;
    for (const t of seen) x[t] = penalise(x[t]!, r);
    for (const t of row.outputCounts.keys()) if (!seen.has(t)) x[t] = penalise(x[t]!, r);
  }
  if (p.frequencyPenalty !== 0 || p.presencePenalty !== 0) {
    for (const [t, count] of row.outputCounts) {
      x[t] = x[t]! - p.frequencyPenalty * count - (count > 0 ? p.presencePenalty : 0);
    }
  }
  if (p.logitBias !== undefined) for (const [t, bias] of p.logitBias) x[t] = x[t]! + bias;
  for (const t of row.bannedTokenIds) x[t] = Number.NEGATIVE_INFINITY;
}

function penalise(logit: number, r: number): number {
  return logit > 0 ? logit / r : logit * r;
}

/** True when applyPenalties would change anything, so the sampler can skip the row copy. */
export function needsAdjustment(row: SamplingRow): boolean {
  const p = row.params;
  return (
    p.repetitionPenalty !== 1 ||
    p.frequencyPenalty !== 0 ||
    p.presencePenalty !== 0 ||
    (p.logitBias !== undefined && p.logitBias.size > 0) ||
    row.bannedTokenIds.length > 0
  );
}
