// The kernels through the Node binding on a real GPU (test/gpu/binding-checks.ts). Skips, saying why,
// where the addon or a GPU is unavailable (CI, machines without a GPU). The full kernel suite (b to
// 300, lengths to 20000, every schedule) is the standalone scripts/gpu-suite.sh.
import { CudaDevice, cudaAvailability } from '@flashserve/cuda';
import { describe, expect, it } from 'vitest';
import { mlaAvailability } from '../src/index.js';
import { runBindingChecks } from './gpu/binding-checks.js';

const mla = mlaAvailability();
const cuda = cudaAvailability();
const why = !mla.available ? mla.reason : !cuda.available ? `@flashserve/cuda: ${cuda.reason}` : '';
const title = why ? `MLA kernels through the binding (skipped: ${why})` : 'MLA kernels through the binding';

describe.skipIf(why !== '')(title, () => {
  it('kernels match an fp32 reference; kvWrite, metadata and argument errors behave', () => {
    const hopper = mla.available && mla.devices[0]!.major === 9;
    const failed = runBindingChecks(new CudaDevice(), hopper).filter((r) => !r.ok);
    expect(failed).toEqual([]);
  });
});
