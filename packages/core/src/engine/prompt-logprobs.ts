// Prompt logprobs: the log-probability of each prompt token given the tokens before it, read from
// the logits rows the batch builder added at prompt positions (BuiltBatch.promptLogits).
//
// Like the sampled tokens' logprobs these are of the raw logits (vLLM v1's default), whatever the
// request's temperature or penalties. The rows are copied to the host a slice at a time: a long
// prompt chunk has thousands of rows of a 100k-token vocabulary, more than is worth holding at once.

import type { Device, Tensor } from '../device/device.js';
import { rawLogprob } from '../sampling/host-sampler.js';
import type { Sequence } from '../scheduler/sequence.js';
import type { PromptLogitsRun } from './batch-builder.js';
import type { TokenLogprob } from './protocol.js';

/** Rows copied to the host per read: 32 rows of a 129k vocabulary are 16 MiB. */
const ROWS_PER_READ = 32;

/** Calls `record(seq, position, logprob)` for every prompt token the runs cover: `position` is the
 * predicted token's index in the prompt (firstPos + 1 .. firstPos + count). */
export function readPromptLogprobs<S extends Sequence>(
  device: Device,
  logits: Tensor,
  runs: readonly PromptLogitsRun<S>[],
  numTop: (seq: S) => number,
  record: (seq: S, position: number, logprob: TokenLogprob) => void,
): void {
  if (runs.length === 0) return;
  const [numRows, vocab] = logits.shape as [number, number];
  const flat = device.reshape(logits, [numRows * vocab]);
  for (const run of runs) {
    const top = numTop(run.seq);
    for (let done = 0; done < run.count; done += ROWS_PER_READ) {
      const count = Math.min(ROWS_PER_READ, run.count - done);
      const slice = device.sliceLast(flat, (run.firstRow + done) * vocab, count * vocab);
      let host: Float32Array;
      try {
        host = device.toHost(slice) as Float32Array;
      } finally {
        device.release(slice);
      }
      for (let k = 0; k < count; k++) {
        const position = run.firstPos + done + k + 1;
        const row = host.subarray(k * vocab, (k + 1) * vocab);
        record(run.seq, position, rawLogprob(row, run.seq.tokens[position]!, top, true));
      }
    }
  }
}
