// NcclProcessGroup on real GPUs, one process per GPU (rank r drives GPU r; the launcher sets
// NCCL_NVLS_ENABLE=0 for every rank): rank 0 writes NCCL's unique id to a file, the other ranks read it. Checks that
// all-reduce (f32 and bf16), all-gather and broadcast give the right values on every rank, then times
// all-reduces of 1 MiB .. 1 GiB (f32) and prints NCCL's bus bandwidth, 2 (n - 1) / n * bytes / time, the
// figure nccl-tests reports. Rank 0 prints one JSON line per size.
// With --step H,V/N,layers [--batches 1,32,128]: also the collectives of one tensor-parallel decode
// step alone, replayed as a CUDA graph (stepCollectives below).
// Usage (see scripts/gpu-nccl.sh): node nccl-allreduce.mjs <rank> <worldSize> <idFile> [--step ...]
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import {
  CudaDevice,
  type CudaTensor,
  NcclProcessGroup,
  ncclAvailability,
  ncclUniqueId,
} from '../../src/index.js';

function fail(msg: string): never {
  console.error(`rank ${process.argv[2]}: ${msg}`);
  process.exit(1);
}

async function main(): Promise<void> {
  const rank = Number(process.argv[2]);
  const worldSize = Number(process.argv[3]);
  const idFile = process.argv[4];
  if (!Number.isInteger(rank) || !Number.isInteger(worldSize) || idFile === undefined) {
    fail('usage: nccl-allreduce.mjs <rank> <worldSize> <idFile>');
  }
  const avail = ncclAvailability();
  if (!avail.available) fail(`NCCL unavailable: ${avail.reason}`);
  const device = new CudaDevice({ deviceIndex: rank });
  let uniqueId: Uint8Array;
  if (rank === 0) {
    uniqueId = ncclUniqueId();
    writeFileSync(`${idFile}.tmp`, uniqueId);
    renameSync(`${idFile}.tmp`, idFile);
  } else {
    const t0 = Date.now();
    while (!existsSync(idFile)) {
      if (Date.now() - t0 > 60_000) fail('no unique id from rank 0 within 60 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    uniqueId = new Uint8Array(readFileSync(idFile));
  }
  const group = new NcclProcessGroup({ device, rank, worldSize, uniqueId });

  // Correctness: rank r contributes r + 1 + i / 1000 at index i (exact in f32 and, rounded, in bf16).
  const n = 4099;
  const mine = Float32Array.from({ length: n }, (_, i) => rank + 1 + (i % 64) / 64);
  const want = (i: number) => (worldSize * (worldSize + 1)) / 2 + (worldSize * (i % 64)) / 64;
  // bf16 bits of exactly representable values: the upper half of each f32.
  const f32 = new Uint32Array(mine.buffer);
  const bf = device.upload(
    Uint16Array.from(f32, (u) => u >>> 16),
    [n],
    'bf16',
  );
  const bfSum = device.toHost(group.allReduceSum(bf)) as Float32Array;
  // The host form sums in place (ProcessGroup's contract), so it comes after the bf16 input is made.
  const sum = group.allReduceSum(mine);
  for (let i = 0; i < n; i++)
    if (sum[i] !== want(i)) fail(`allReduceSum f32 [${i}] = ${sum[i]}, want ${want(i)}`);
  for (let i = 0; i < n; i++) {
    if (Math.abs(bfSum[i]! - want(i)) > 0.02 * want(i))
      fail(`allReduceSum bf16 [${i}] = ${bfSum[i]}, want ~${want(i)}`);
  }
  const gathered = group.allGather(Float32Array.of(rank, rank * 10));
  for (let r = 0; r < worldSize; r++) {
    if (gathered[2 * r] !== r || gathered[2 * r + 1] !== r * 10) fail(`allGather: ${Array.from(gathered)}`);
  }
  const root = worldSize - 1;
  const b = group.broadcast(Float32Array.of(rank === root ? 42 : -1, rank), root) as Float32Array;
  if (b[0] !== 42 || b[1] !== root) fail(`broadcast from ${root}: ${Array.from(b)}`);
  group.barrier();
  if (rank === 0)
    console.log(JSON.stringify({ check: 'allReduce f32/bf16, allGather, broadcast', ok: true, worldSize }));

  // Bandwidth: f32 all-reduces, several back to back per size after a warm-up.
  for (const mib of [1, 8, 64, 256, 1024]) {
    const count = (mib << 20) / 4;
    // uploadF32: upload() stores floats as bf16.
    const x = device.uploadF32(new Float32Array(count).fill(1), [count]);
    const iters = mib >= 256 ? 10 : 30;
    for (let i = 0; i < 3; i++) device.release(group.allReduceSum(x));
    device.synchronize();
    group.barrier();
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) device.release(group.allReduceSum(x));
    device.synchronize();
    const ms = (performance.now() - t0) / iters;
    const bytes = (x as CudaTensor).bytes;
    const busGbs = (((2 * (worldSize - 1)) / worldSize) * (bytes / (ms * 1e-3))) / 1e9;
    if (rank === 0)
      console.log(
        JSON.stringify({
          allReduce_mib: mib,
          ms: +ms.toFixed(3),
          algo_gbs: +(bytes / (ms * 1e-3) / 1e9).toFixed(0),
          bus_gbs: +busGbs.toFixed(0),
        }),
      );
    device.release(x);
  }
  const step = flagValue('--step');
  if (step !== undefined) stepCollectives(device, group, step, flagValue('--batches') ?? '1,32,128');
  // Graphs holding NCCL work keep the communicator busy: ncclCommDestroy waited forever with them.
  device.resetGraphs();
  group.destroy();
  if (rank === 0) console.log('nccl: ALL OK');
}

function flagValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/**
 * The collectives of one tensor-parallel decode step alone, as the model runs them (docs/
 * tensor-parallel.md): per layer one all-reduce after o_proj and one after the MLP, one for the
 * embedding, all of [B, H] bf16, and one all-gather of the LM head's [B, V/N] bf16 logits; replayed as
 * one CUDA graph, as a decode step is. `spec` is "H,V/N,layers". Rank 0 prints one JSON line per batch:
 * this is the collective part of the TP step's floor (tp-bench.ts reads it).
 */
function stepCollectives(device: CudaDevice, group: NcclProcessGroup, spec: string, batches: string): void {
  const [H, vocabShard, layers] = spec.split(',').map(Number) as [number, number, number];
  const allReduces = 2 * layers + 1;
  for (const B of batches.split(',').map(Number)) {
    const x = device.empty([B, H], 'bf16');
    const logits = device.empty([B, vocabShard], 'bf16');
    const run = (): CudaTensor => {
      let t = x;
      for (let i = 0; i < allReduces; i++) {
        const y = group.allReduceSum(t) as CudaTensor;
        if (t !== x) device.release(t);
        t = y;
      }
      device.release(group.allGather(logits));
      return t;
    };
    const key = `tp-step-${B}`;
    // First call eager, second captured, then replays (CudaDevice.graph).
    for (let i = 0; i < 5; i++) device.release(device.graph(key, run));
    device.synchronize();
    group.barrier();
    const iters = 50;
    let t0 = performance.now();
    for (let i = 0; i < iters; i++) device.release(device.graph(key, run));
    device.synchronize();
    const graphMs = (performance.now() - t0) / iters;
    group.barrier();
    t0 = performance.now();
    for (let i = 0; i < iters; i++) device.release(run());
    device.synchronize();
    const eagerMs = (performance.now() - t0) / iters;
    if (group.rank === 0) {
      console.log(
        JSON.stringify({
          step_collectives: {
            batch: B,
            hidden: H,
            vocab_shard: vocabShard,
            all_reduces: allReduces,
            all_gathers: 1,
          },
          graph_ms: +graphMs.toFixed(4),
          eager_ms: +eagerMs.toFixed(4),
          us_per_collective_graph: +((graphMs * 1000) / (allReduces + 1)).toFixed(2),
        }),
      );
    }
    device.release(x);
    device.release(logits);
  }
}

main().catch((e: unknown) => fail(e instanceof Error ? (e.stack ?? e.message) : String(e)));
