// Sampling on the CPU from logits read back from the device.
//
// Per row: logprobs of the raw logits (vLLM v1's default "raw" mode) -> penalties and bans ->
// greedy argmax when temperature is 0, else temperature -> softmax -> top-k, then top-p over the
// top-k mass, then min-p -> one uniform draw from the row's own Rng.
//
// NOTE: each sampled (non-greedy) token takes exactly one draw, whatever the filters, so a seeded
// request's stream stays aligned however its rows are batched or preempted.

import type { Device, Tensor } from '../device/device.js';
import type { TokenLogprob } from '../engine/protocol.js';
import { applyPenalties, needsAdjustment } from './penalties.js';
import type { PendingSample, SampledToken, Sampler, SamplingRow } from './sampler.js';
import { selectTop, sortTop } from './top-candidates.js';

/** Default largest `logprobs` a request may ask for (OpenAI's limit); EngineOptions.maxLogprobs overrides. */
export const MAX_LOGPROBS = 20;
/** Candidates examined first when top-p/min-p need a sorted head; grows x4 until the cut is inside. */
const FIRST_HEAD = 64;

export class HostSampler implements Sampler {
  #work = new Float32Array(0);
  #idx = new Int32Array(0);

  sample(logits: Tensor, device: Device, rows: readonly SamplingRow[]): SampledToken[] {
    const host = device.toHost(logits);
    if (!(host instanceof Float32Array))
      throw new TypeError(`logits must be floating point, got ${logits.dtype}`);
    return this.sampleHost(host, logits.shape[1] ?? 0, rows);
  }

  /** Samples now (the logits are read back anyway) and writes the ids into `into` on the device, so an
   * engine with async scheduling runs over any device that has Device.mergeTokenIds. */
  sampleAsync(
    logits: Tensor,
    device: Device,
    rows: readonly SamplingRow[],
    into: Tensor,
  ): PendingSample | undefined {
    const sampled = this.sample(logits, device, rows);
    const capacity = into.shape.reduce((a, b) => a * b, 1);
    if (capacity < rows.length)
      throw new Error(`sampleAsync: ${rows.length} rows, ids buffer of ${capacity}`);
    const ids = new Int32Array(capacity);
    for (let r = 0; r < rows.length; r++) ids[r] = sampled[r]!.tokenId;
    device.write(into, ids, 'i32');
    return { wait: () => sampled };
  }

  /** logits: [numRows, vocabSize] row-major, on the host. */
  sampleHost(logits: Float32Array, vocabSize: number, rows: readonly SamplingRow[]): SampledToken[] {
    if (this.#work.length < vocabSize) {
      this.#work = new Float32Array(vocabSize);
      this.#idx = new Int32Array(vocabSize);
    }
    const out: SampledToken[] = new Array(rows.length);
    for (let r = 0; r < rows.length; r++) out[r] = this.#sampleRow(logits, vocabSize, rows[r]!);
    return out;
  }

  #sampleRow(logits: Float32Array, vocab: number, row: SamplingRow): SampledToken {
    const raw = logits.subarray(row.logitsRow * vocab, (row.logitsRow + 1) * vocab);
    const p = row.params;
    let x = raw;
    if (needsAdjustment(row) || p.temperature > 0) {
      x = this.#work.subarray(0, vocab);
      x.set(raw);
      applyPenalties(x, row);
    }
    const tokenId = p.temperature <= 0 ? argmax(x) : this.#sampleTempered(x, row);
    const logprob = p.logprobs === undefined ? undefined : rawLogprob(raw, tokenId, p.logprobs);
    return { tokenId, logprob };
  }

  /** x is the scratch row (already penalised); turns it into unnormalised probabilities in place. */
  #sampleTempered(x: Float32Array, row: SamplingRow): number {
    const p = row.params;
    const vocab = x.length;
    const invT = 1 / p.temperature;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < vocab; i++) if (x[i]! > max) max = x[i]!;
    let total = 0;
    for (let i = 0; i < vocab; i++) {
      const e = Math.exp((x[i]! - max) * invT);
      x[i] = e;
      total += e;
    }
    const u = row.rng.next();
    const topK = p.topK > 0 && p.topK < vocab ? p.topK : 0;
    if (topK === 0 && p.topP >= 1 && p.minP <= 0) return drawLinear(x, total * u);

    // Every filter keeps a prefix of the tokens sorted best first, so only a sorted head is needed.
    const idx = this.#idx;
    for (let i = 0; i < vocab; i++) idx[i] = i;
    let head = topK > 0 ? topK : Math.min(FIRST_HEAD, vocab);
    for (;;) {
      selectTop(idx, vocab, head, x);
      sortTop(idx, head, x);
      const keep = keptPrefix(idx, head, x, topK > 0 ? headMass(idx, head, x) : total, p.topP, p.minP);
      if (keep < head || topK > 0 || head === vocab) return drawSorted(idx, keep, x, u);
      head = Math.min(vocab, head * 4);
    }
  }
}

/** Length of the kept prefix of idx[0, head) under top-p (against `mass`) and min-p. */
function keptPrefix(
  idx: Int32Array,
  head: number,
  x: Float32Array,
  mass: number,
  topP: number,
  minP: number,
) {
  const pMaxCut = minP > 0 ? minP * x[idx[0]!]! : 0;
  const pCut = topP < 1 ? topP * mass : Number.POSITIVE_INFINITY;
  let cum = 0;
  for (let i = 0; i < head; i++) {
    const v = x[idx[i]!]!;
    // Token i stays while the mass before it is below the nucleus and it passes min-p; the first
    // token always stays.
    if (i > 0 && (cum >= pCut || v < pMaxCut)) return i;
    cum += v;
  }
  return head;
}

function headMass(idx: Int32Array, head: number, x: Float32Array): number {
  let m = 0;
  for (let i = 0; i < head; i++) m += x[idx[i]!]!;
  return m;
}

function drawSorted(idx: Int32Array, keep: number, x: Float32Array, u: number): number {
  const target = headMass(idx, keep, x) * u;
  let cum = 0;
  for (let i = 0; i < keep; i++) {
    cum += x[idx[i]!]!;
    if (target < cum) return idx[i]!;
  }
  return idx[keep - 1]!;
}

function drawLinear(x: Float32Array, target: number): number {
  let cum = 0;
  let last = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v <= 0) continue;
    cum += v;
    last = i;
    if (target < cum) return i;
  }
  return last;
}

/** First index of the largest value (ties go to the lower id, as torch.argmax does). */
export function argmax(x: Float32Array): number {
  let best = 0;
  let bestV = x[0]!;
  for (let i = 1; i < x.length; i++) {
    const v = x[i]!;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

/** Log-softmax of the raw row at tokenId, plus its `numTop` best tokens (and its rank when asked). */
export function rawLogprob(
  raw: Float32Array,
  tokenId: number,
  numTop: number,
  withRank = false,
): TokenLogprob {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < raw.length; i++) if (raw[i]! > max) max = raw[i]!;
  let sum = 0;
  for (let i = 0; i < raw.length; i++) sum += Math.exp(raw[i]! - max);
  const lse = max + Math.log(sum);
  const topLogprobs: { tokenId: number; logprob: number }[] = [];
  if (numTop > 0) {
    // Insertion into a short sorted list: numTop <= MAX_LOGPROBS, so this is one pass in practice.
    const best: number[] = [];
    for (let i = 0; i < raw.length; i++) {
      const v = raw[i]!;
      if (best.length === numTop && v <= raw[best[numTop - 1]!]!) continue;
      let j = best.length < numTop ? best.length : numTop - 1;
      if (best.length < numTop) best.push(i);
      while (j > 0 && raw[best[j - 1]!]! < v) {
        best[j] = best[j - 1]!;
        j--;
      }
      best[j] = i;
    }
    for (const t of best) topLogprobs.push({ tokenId: t, logprob: raw[t]! - lse });
  }
  const out: TokenLogprob = { tokenId, logprob: raw[tokenId]! - lse, topLogprobs };
  if (withRank) {
    const v = raw[tokenId]!;
    let above = 0;
    for (let i = 0; i < raw.length; i++) if (raw[i]! > v) above++;
    out.rank = above + 1;
  }
  return out;
}
