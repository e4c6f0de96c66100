// Decode step time under tensor parallelism, every TP size beside TP = 1 from the same run, with the
// time rank 0 spends inside collectives (waits for the slowest rank included) and its share of the
// step. Dummy weights of a chosen shape; batches of sequences decoding one token per step over a
// context of --context tokens, through the paged cache with hand-built metadata (as the engine does).
//
//   npx pnpm@12.4.2 --filter @flashserve/models bench:tp                       (CPU, tiny shapes, TP 1 and 2)
//   npx pnpm@12.4.2 --filter @flashserve/models bench:tp -- --tp 1,2,4 --shapes tiny --batch 1,4 --context 128
//
// Flags: --tp 1,2 (list)  --shapes tiny|v2-lite|v2 (tiny)  --layers N (the shape's own)  --batch 1,4
// (list)  --context 128  --steps 16.
// NOTE: on a CPU shared with other work, TP > 1 splits the same cores, so it measures overhead, not
// speed-up. The GPU figures issue 11 asks for come from packages/cuda/scripts/bench/tp-bench.ts
// (CUDA ranks, NCCL, CUDA graphs), run by packages/cuda/scripts/gpu-tp.sh on a machine of several GPUs.

import { fileURLToPath } from 'node:url';
import { type CommonAttentionMetadata, type DeepseekConfig, parseDeepseekConfig } from '@flashserve/core';
import {
  type ClosableModel,
  createTensorParallelModel,
  DEEPSEEK_V2_LITE_CONFIG,
  TensorParallelModel,
  TINY_DEEPSEEK_V3_CONFIG,
} from '../src/index.js';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}
const list = (s: string) => s.split(',').map(Number);

/** Shapes as published in each model's config.json (dummy weights: the numbers do not matter). */
const SHAPES: Record<string, Record<string, unknown>> = {
  tiny: TINY_DEEPSEEK_V3_CONFIG,
  'v2-lite': DEEPSEEK_V2_LITE_CONFIG,
  // DeepSeek-V2 (236B, 21B active).
  v2: {
    model_type: 'deepseek_v2',
    vocab_size: 102400,
    hidden_size: 5120,
    intermediate_size: 12288,
    moe_intermediate_size: 1536,
    num_hidden_layers: 60,
    num_attention_heads: 128,
    num_key_value_heads: 128,
    q_lora_rank: 1536,
    kv_lora_rank: 512,
    qk_nope_head_dim: 128,
    qk_rope_head_dim: 64,
    v_head_dim: 128,
    first_k_dense_replace: 1,
    n_routed_experts: 160,
    n_shared_experts: 2,
    num_experts_per_tok: 6,
    n_group: 8,
    topk_group: 3,
    topk_method: 'group_limited_greedy',
    norm_topk_prob: false,
    routed_scaling_factor: 16.0,
    max_position_embeddings: 163840,
    rope_theta: 10000,
    rope_scaling: null,
    rms_norm_eps: 1e-6,
  },
};

const tpSizes = list(flag('tp', '1,2'));
const shapesName = flag('shapes', 'tiny');
const batches = list(flag('batch', '1,4'));
const context = Number(flag('context', '128'));
const steps = Number(flag('steps', '16'));
const shape = SHAPES[shapesName];
if (shape === undefined) throw new Error(`--shapes must be one of ${Object.keys(SHAPES).join(', ')}`);
const layers = flag('layers', '');
const config: DeepseekConfig = parseDeepseekConfig(
  layers === '' ? shape : { ...shape, num_hidden_layers: Number(layers) },
  `bench shapes ${shapesName}`,
);
const workerEntry = new URL('./tp-worker.mjs', import.meta.url);
const blockSize = 16;
const warmSteps = 3;

interface Row {
  tp: number;
  batch: number;
  stepMs: number;
  collectiveMs: number;
  collectives: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function argmaxRows(logits: Float32Array, rows: number): number[] {
  const V = logits.length / rows;
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[r * V + i]! > logits[r * V + best]!) best = i;
    out.push(best);
  }
  return out;
}

/** One step over `seqs`: each contributes tokens [start, start + tokens.length). */
function step(model: ClosableModel, seqs: { blocks: number[]; start: number; tokens: number[] }[]): number[] {
  const ids: number[] = [];
  const positions: number[] = [];
  const slots: number[] = [];
  const qsl = [0];
  const seqLens: number[] = [];
  const computed: number[] = [];
  const logitsIdx: number[] = [];
  let maxBlocks = 1;
  for (const s of seqs) {
    s.tokens.forEach((t, i) => {
      const p = s.start + i;
      ids.push(t);
      positions.push(p);
      slots.push(s.blocks[Math.floor(p / blockSize)]! * blockSize + (p % blockSize));
    });
    qsl.push(ids.length);
    seqLens.push(s.start + s.tokens.length);
    computed.push(s.start);
    logitsIdx.push(ids.length - 1);
    maxBlocks = Math.max(maxBlocks, s.blocks.length);
  }
  const tables = new Int32Array(seqs.length * maxBlocks);
  for (const [r, s] of seqs.entries()) tables.set(s.blocks, r * maxBlocks);
  const md: CommonAttentionMetadata = {
    numReqs: seqs.length,
    numTokens: ids.length,
    queryStartLoc: Int32Array.from(qsl),
    seqLens: Int32Array.from(seqLens),
    numComputedTokens: Int32Array.from(computed),
    positions: Int32Array.from(positions),
    slotMapping: Int32Array.from(slots),
    blockTables: tables,
    maxBlocksPerReq: maxBlocks,
    blockSize,
    maxQueryLen: Math.max(...seqs.map((s) => s.tokens.length)),
    maxSeqLen: Math.max(...seqLens),
  };
  const out = model.forward({
    tokenIds: Int32Array.from(ids),
    attention: md,
    logitsIndices: Int32Array.from(logitsIdx),
  });
  const host = model.device.toHost(out) as Float32Array;
  model.device.release(out);
  return argmaxRows(host, seqs.length);
}

async function measure(tp: number): Promise<Row[]> {
  const model = await createTensorParallelModel({
    config,
    dummySeed: 1,
    tensorParallelSize: tp,
    workerEntry,
  });
  const rows: Row[] = [];
  try {
    for (const B of batches) {
      const perSeq = Math.ceil((context + warmSteps + steps + 1) / blockSize);
      model.allocateKvCache(B * perSeq + 1, blockSize);
      const seqs = Array.from({ length: B }, (_, b) => ({
        blocks: Array.from({ length: perSeq }, (_, i) => 1 + b * perSeq + i),
        start: 0,
        tokens: Array.from({ length: context }, (_, i) => (i * 131 + b * 17 + 7) % config.vocabSize),
      }));
      // Prefill one sequence per step (untimed), then decode.
      let next: number[] = [];
      for (const s of seqs) next.push(step(model, [s])[0]!);
      seqs.forEach((s, i) => {
        s.start = context;
        s.tokens = [next[i]!];
      });
      const times: number[] = [];
      const tpModel = model instanceof TensorParallelModel ? model : undefined;
      const before = tpModel?.collectiveStats() ?? { collectives: 0, collectiveMs: 0 };
      for (let k = 0; k < warmSteps + steps; k++) {
        if (k === warmSteps) Object.assign(before, tpModel?.collectiveStats() ?? before);
        const t0 = performance.now();
        next = step(model, seqs);
        if (k >= warmSteps) times.push(performance.now() - t0);
        seqs.forEach((s, i) => {
          s.start++;
          s.tokens = [next[i]!];
        });
      }
      const after = tpModel?.collectiveStats() ?? before;
      rows.push({
        tp,
        batch: B,
        stepMs: median(times),
        collectiveMs: (after.collectiveMs - before.collectiveMs) / steps,
        collectives: (after.collectives - before.collectives) / steps,
      });
    }
  } finally {
    await model.close();
  }
  return rows;
}

const all: Row[] = [];
for (const tp of tpSizes) all.push(...(await measure(tp)));
console.log(
  `shapes ${shapesName}: ${config.numHiddenLayers} layers, hidden ${config.hiddenSize}, ${config.numAttentionHeads} heads, vocab ${config.vocabSize}; device cpu; context ${context}, ${steps} decode steps (median)`,
);
console.log('tp  batch  step ms  tok/s    vs TP=1  collectives/step  collective ms/step  share');
for (const r of all) {
  const base = all.find((b) => b.tp === 1 && b.batch === r.batch);
  const rel = base === undefined ? '   -  ' : `${(base.stepMs / r.stepMs).toFixed(2)}x`;
  console.log(
    `${String(r.tp).padEnd(3)} ${String(r.batch).padEnd(6)} ${r.stepMs.toFixed(2).padStart(7)}  ${((r.batch / r.stepMs) * 1000).toFixed(1).padStart(7)}  ${rel.padStart(7)}  ${r.collectives.toFixed(0).padStart(16)}  ${r.collectiveMs.toFixed(2).padStart(18)}  ${((100 * r.collectiveMs) / r.stepMs).toFixed(0).padStart(4)}%`,
  );
}
if (fileURLToPath(import.meta.url).endsWith('.ts'))
  console.log('(run through the bench:tp script: it builds the worker bundle)');
