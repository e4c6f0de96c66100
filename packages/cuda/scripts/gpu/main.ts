// The Node half of the GPU suite (scripts/gpu-suite.sh bundles this with esbuild and runs it on the
// GPU machine): CudaDevice ops against the CPU device, CUDA graph replays against eager runs, and the
// transformers fixtures through DeepseekModel with every GPU attention backend that is available
// (plus a host-bridge backend that runs core's reference MLA on the host, so the device's own ops
// are checked even without the GPU attention kernels).
//
// Usage: node gpu-check.mjs [fixturesDir] ; writes $OUT/gpu-check.json when OUT is set.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AttentionBackend, attentionBackends } from '@flashserve/core';
// Imported for its side effect: it registers "flashmla" and "cuda-mla" in core's registry.
import '../../../mla-backend/src/index.js';
import { CudaDevice, cudaAvailability } from '../../src/index.js';
import { runGraphChecks } from '../../test/gpu/graph-checks.js';
import { HostBridgeMlaBackend } from '../../test/gpu/host-bridge-backend.js';
import { type CheckRow, runOpChecks } from '../../test/gpu/op-checks.js';
import { runFixtureChecks, runLoaderCheck } from './fixture-checks.js';

/** Registered backends that run on CUDA devices (the MLA kernels' flashmla and cuda-mla). */
function gpuBackends(): AttentionBackend[] {
  const out: AttentionBackend[] = [];
  for (const name of attentionBackends.names()) {
    try {
      const b = attentionBackends.get(name);
      if (b.deviceKinds.includes('cuda')) out.push(b);
    } catch (err) {
      console.log(`(backend ${name} failed to construct: ${(err as Error).message})`);
    }
  }
  return out;
}

function main(): number {
  const avail = cudaAvailability();
  if (!avail.available) {
    console.log(`CUDA unavailable: ${avail.reason}`);
    return 2;
  }
  const fixturesDir = process.argv[2] ?? join(process.cwd(), 'packages/models/test/fixtures');
  const device = new CudaDevice();
  console.log(`device: ${device.info.name}, cuBLAS ${device.hasCublas}`);
  const rows: CheckRow[] = [];
  const section = (title: string, fn: () => CheckRow[]): void => {
    const t0 = performance.now();
    const r = fn();
    rows.push(...r);
    console.log(
      `${title}: ${r.filter((x) => x.ok).length}/${r.length} ok in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  };
  section('ops vs CpuDevice', () => runOpChecks(device));
  section('CUDA graphs', () => runGraphChecks(device));
  section('safetensors straight to the device', () => runLoaderCheck(device, fixturesDir));
  section('fixtures (host-bridge attention)', () =>
    runFixtureChecks(device, new HostBridgeMlaBackend(), fixturesDir),
  );
  if (process.env.GPU_CHECK_F32_ROUTER === '1') {
    // Experiment: router logits in fp32 (transformers' gate) instead of bf16; see fixture-checks.ts.
    section('fixtures (host-bridge attention, f32 router logits)', () =>
      runFixtureChecks(device, new HostBridgeMlaBackend(), fixturesDir, undefined, true),
    );
  }
  for (const b of gpuBackends()) {
    // Both prompts (different query lengths) prefilled in one step: the backends plan any step.
    section(`fixtures (${b.name})`, () => runFixtureChecks(device, b, fixturesDir, undefined, false, false));
  }
  if (process.env.OUT) writeFileSync(join(process.env.OUT, 'gpu-check.json'), JSON.stringify(rows, null, 1));
  console.log('\ncheck                                                         value      limit  ok');
  for (const r of rows) {
    const v = Number.isFinite(r.value) ? r.value.toExponential(2) : String(r.value);
    console.log(
      `${r.name.padEnd(60).slice(0, 60)} ${v.padStart(9)} ${r.limit.toExponential(0).padStart(7)}  ${r.ok ? 'ok' : 'FAIL'}`,
    );
    if (!r.ok && r.note) console.log(`    ${r.note.split('\n').slice(0, 4).join('\n    ')}`);
  }
  const failed = rows.filter((r) => !r.ok).length;
  console.log(
    `\n${failed === 0 ? 'ALL OK' : `${failed} FAILED`} (${rows.length} checks) mem ${JSON.stringify(device.memStats())}`,
  );
  return failed === 0 ? 0 : 1;
}

process.exitCode = main();
