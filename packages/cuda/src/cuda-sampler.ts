// A Sampler for the CUDA device: greedy / temperature / top-k / top-p / min-p sampling and logprobs
// run on the GPU (CudaDevice.sample, or sampleAsync for async scheduling), so a step copies back token
// ids and logprobs instead of the whole [rows, vocab] logits matrix. Rows that need what the GPU kernel
// does not do (repetition, presence or frequency penalties, a logit bias, banned tokens before
// minTokens, more than MAX_GPU_TOP_LOGPROBS alternatives) make the whole step go through the host
// sampler, unchanged.
//
// The uniform number of a tempered row is drawn from the row's own generator exactly as the host
// sampler draws it (one draw per tempered row per step), so seeded requests stay reproducible
// whatever else is batched; the token picked from it may differ from the host's (another order of
// summation), greedy rows are argmax on both.
import {
  type Device,
  HostSampler,
  type PendingSample,
  type SampledToken,
  type Sampler,
  type SamplingRow,
  type Tensor,
} from '@flashserve/core';
import {
  CudaDevice,
  type GpuSamplingParams,
  type GpuSamplingResult,
  type PendingGpuSample,
  sampleAsyncFits,
} from './cuda-device.js';

/** Most alternatives per token the GPU kernel returns. */
export const MAX_GPU_TOP_LOGPROBS = 20;

function gpuCan(row: SamplingRow): boolean {
  const p = row.params;
  return (
    p.repetitionPenalty === 1 &&
    p.frequencyPenalty === 0 &&
    p.presencePenalty === 0 &&
    (p.logitBias === undefined || p.logitBias.size === 0) &&
    row.bannedTokenIds.length === 0 &&
    (p.logprobs === undefined || p.logprobs <= MAX_GPU_TOP_LOGPROBS)
  );
}

/** A step the GPU samples: the device, the logits rows to sample (one per sampling row) and the
 * kernel's per-row parameters; `temps` are the tensors made to gather those rows, released once the
 * sampling is queued. */
interface GpuStep {
  readonly device: CudaDevice;
  readonly input: Tensor;
  readonly params: GpuSamplingParams;
  readonly temps: readonly Tensor[];
}

/** The GPU's results as one SampledToken per row, in the host sampler's shape. */
function sampledTokens(rows: readonly SamplingRow[], res: GpuSamplingResult, numTop: number): SampledToken[] {
  return rows.map((r, i): SampledToken => {
    const tokenId = res.tokens[i]!;
    const k = r.params.logprobs;
    if (k === undefined) return { tokenId, logprob: undefined };
    const topLogprobs: { tokenId: number; logprob: number }[] = [];
    for (let j = 0; j < k; j++)
      topLogprobs.push({
        tokenId: res.topIds[i * numTop + j]!,
        logprob: res.topLogprobs[i * numTop + j]!,
      });
    return { tokenId, logprob: { tokenId, logprob: res.logprobs[i]!, topLogprobs } };
  });
}

export class CudaSampler implements Sampler {
  readonly #host = new HostSampler();
  /** Steps sampled on the GPU and on the host (for tests and the startup log). */
  readonly counts = { gpu: 0, host: 0 };

  sample(logits: Tensor, device: Device, rows: readonly SamplingRow[]): SampledToken[] {
    if (rows.length === 0) return [];
    const step = this.#gpuStep(logits, device, rows);
    if (step === undefined) {
      this.counts.host++;
      return this.#host.sample(logits, device, rows);
    }
    try {
      return sampledTokens(
        rows,
        step.device.sample(step.input, step.params),
        step.params.numTopLogprobs ?? 0,
      );
    } finally {
      for (const t of step.temps) step.device.release(t);
    }
  }

  /**
   * sample() without waiting for it (async scheduling): the sampled ids go into `into` on the device
   * (i32, at least rows.length long) in stream order, and `wait()` returns what sample() would have.
   * Undefined exactly where sample() would use the host sampler (the caller then calls sample()).
   * Rows' uniform numbers are drawn now, as sample() draws them.
   */
  sampleAsync(
    logits: Tensor,
    device: Device,
    rows: readonly SamplingRow[],
    into: Tensor,
  ): PendingSample | undefined {
    if (rows.length === 0) return { wait: () => [] };
    // Checked before #gpuStep draws the rows' uniform numbers: sample() would draw them again.
    const numTop = Math.max(0, ...rows.map((r) => r.params.logprobs ?? 0));
    if (!sampleAsyncFits(rows.length, numTop)) return undefined;
    const step = this.#gpuStep(logits, device, rows);
    if (step === undefined) return undefined;
    let pending: PendingGpuSample;
    try {
      pending = step.device.sampleAsync(step.input, step.params, into);
    } finally {
      // Queued reads of these are stream-ordered before any reuse of their memory (as in sample()).
      for (const t of step.temps) step.device.release(t);
    }
    let tokens: SampledToken[] | undefined;
    return {
      wait: () => {
        tokens ??= sampledTokens(rows, pending.wait(), numTop);
        return tokens;
      },
    };
  }

  /** The GPU's part of a step (counted), or undefined where it goes to the host sampler: on another
   * device, or with a row the kernel cannot sample. Draws each tempered row's uniform number. */
  #gpuStep(logits: Tensor, device: Device, rows: readonly SamplingRow[]): GpuStep | undefined {
    if (!(device instanceof CudaDevice) || logits.shape.length !== 2 || !rows.every(gpuCan)) return undefined;
    this.counts.gpu++;
    const n = rows.length;
    const numLogitsRows = logits.shape[0]!;
    // Several sampling rows may share one logits row (n > 1 choices): gather them into rows of their own.
    const identity = n === numLogitsRows && rows.every((r, i) => r.logitsRow === i);
    let input = logits;
    const temps: Tensor[] = [];
    if (!identity) {
      const idx = device.upload(
        Int32Array.from(rows, (r) => r.logitsRow),
        [n],
        'i32',
      );
      input = device.embedding(logits, idx);
      temps.push(idx, input);
    }
    const temperature = new Float32Array(n);
    const topK = new Int32Array(n);
    const topP = new Float32Array(n);
    const minP = new Float32Array(n);
    const uniform = new Float32Array(n);
    let numTop = 0;
    rows.forEach((r, i) => {
      const p = r.params;
      const greedy = p.temperature <= 0;
      temperature[i] = greedy ? 0 : p.temperature;
      topK[i] = Math.max(p.topK, 0);
      topP[i] = p.topP;
      minP[i] = p.minP;
      // The host sampler draws one number per tempered row per step; so does this one.
      uniform[i] = greedy ? 0 : r.rng.next();
      if (p.logprobs !== undefined) numTop = Math.max(numTop, p.logprobs);
    });
    return {
      device,
      input,
      params: { temperature, topK, topP, minP, uniform, numTopLogprobs: numTop },
      temps,
    };
  }
}
