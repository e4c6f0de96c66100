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
