// Runs test/gpu/binding-checks.ts outside vitest, for GPU machines that have Node but no
// node_modules: scripts/gpu-suite.sh bundles it with esbuild (scripts/bundle-binding-check.sh).
import { CudaDevice, cudaAvailability } from '@flashserve/cuda';
import { mlaAvailability } from '../src/index.js';
import { runBindingChecks } from '../test/gpu/binding-checks.js';

const mla = mlaAvailability();
const cuda = cudaAvailability();
if (!mla.available || !cuda.available) {
  console.log(
    `binding-check: skipped (${!mla.available ? mla.reason : `@flashserve/cuda: ${!cuda.available ? cuda.reason : ''}`})`,
  );
  process.exit(0);
}
const results = runBindingChecks(new CudaDevice(), mla.devices[0]!.major === 9);
for (const r of results) console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name}: ${r.detail}`);
const failed = results.filter((r) => !r.ok).length;
console.log(`binding-check: ${failed === 0 ? 'ALL PASSED' : `${failed} FAILED`}`);
process.exit(failed === 0 ? 0 : 1);
