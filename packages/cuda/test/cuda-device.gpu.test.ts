// CudaDevice on a real GPU: every op against the CPU device, and CUDA graph replays against eager
// runs. Skips, saying why, where CUDA is unavailable (CI, dev machines without a GPU).
import { describe, expect, it } from 'vitest';
import { CudaDevice, cudaAvailability } from '../src/index.js';
import { runGraphChecks } from './gpu/graph-checks.js';
import { runOpChecks } from './gpu/op-checks.js';

const avail = cudaAvailability();
const title = avail.available ? 'CudaDevice on the GPU' : `CudaDevice on the GPU (skipped: ${avail.reason})`;

describe.skipIf(!avail.available)(title, () => {
  const device = avail.available ? new CudaDevice() : undefined;

  it('matches the CPU device op by op within bf16 tolerances', () => {
    const failed = runOpChecks(device!).filter((r) => !r.ok);
    expect(failed).toEqual([]);
  });

  it('replays captured graphs with new inputs exactly like eager runs', () => {
    const failed = runGraphChecks(device!).filter((r) => !r.ok);
    expect(failed).toEqual([]);
  });
});
