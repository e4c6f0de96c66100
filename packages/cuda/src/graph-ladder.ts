// Batch sizes decode graphs are captured at, and how a step's batch is padded to one of them.
// Small sizes are dense (every size up to 4, then multiples of 8) because padding rows cost real
// work; beyond 64 the steps grow by 32 since a padded row costs little next to the weights read.

/** The ladder of decode batch sizes up to `max` (inclusive of `max` itself). */
export function graphBatchSizes(max: number): number[] {
  const out: number[] = [];
  for (let b = 1; b <= Math.min(4, max); b++) out.push(b);
  for (let b = 8; b <= Math.min(64, max); b += 8) out.push(b);
  for (let b = 96; b <= max; b += 32) out.push(b);
  if (out[out.length - 1] !== max && max > 0) out.push(max);
  return out;
}

/** The smallest ladder size that holds `batch` rows, or undefined when the batch is larger (run eagerly). */
export function graphBatchFor(batch: number, ladder: readonly number[]): number | undefined {
  for (const b of ladder) if (b >= batch) return b;
  return undefined;
}

/** Most requests a decode graph is captured for by default (vLLM's default tops out at 512). */
export const MAX_DECODE_GRAPH_BATCH = 256;
/** Pinned staging the captured uploads of all decode graphs may take (the addon has 32 MiB). */
const GRAPH_STAGING_BUDGET = 24 * 2 ** 20;

/**
 * The decode-graph ladder for the serving engine (EngineOptions.decodeGraphBatchSizes):
 * graphBatchSizes(min(maxNumSeqs, maxBatch)), less its largest sizes while the per-step inputs the
 * graphs upload (block tables of `tableWidth` blocks per request, ids, positions, slots, lengths,
 * logits rows: about 4 * b * (tableWidth + 8) bytes at size b) would not fit the addon's pinned
 * graph staging memory. Steps of more requests than the last size run eagerly.
 */
export function decodeGraphLadder(
  maxNumSeqs: number,
  tableWidth: number,
  maxBatch = MAX_DECODE_GRAPH_BATCH,
): number[] {
  const ladder = graphBatchSizes(Math.min(maxNumSeqs, maxBatch));
  const bytes = (b: number) => 4 * b * (tableWidth + 8) + 6 * 256;
  let total = ladder.reduce((s, b) => s + bytes(b), 0);
  while (ladder.length > 0 && total > GRAPH_STAGING_BUDGET) total -= bytes(ladder.pop()!);
  return ladder;
}

// cudaError_t values after which the CUDA context is unusable (sticky errors): the process must exit
// and be restarted; any other CUDA error fails only the step that hit it.
const STICKY_CUDA_ERRORS = new Set([
  700, // cudaErrorIllegalAddress
  702, // cudaErrorLaunchTimeout
  714, // cudaErrorHardwareStackError
  715, // cudaErrorIllegalInstruction
  716, // cudaErrorMisalignedAddress
  717, // cudaErrorInvalidAddressSpace
  718, // cudaErrorInvalidPc
  719, // cudaErrorLaunchFailure
  999, // cudaErrorUnknown
]);

/** Whether an error thrown by a CudaDevice op means the GPU context is lost (exit cleanly and restart). */
export function isCudaContextLost(err: unknown): boolean {
  const code = (err as { cudaError?: number } | undefined)?.cudaError;
  return typeof code === 'number' && STICKY_CUDA_ERRORS.has(code);
}
