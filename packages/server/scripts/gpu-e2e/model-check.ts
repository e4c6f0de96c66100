// The GPU half of gpu-e2e.sh that goes through DeepseekModel directly, for what the HTTP API cannot
// show: full last-position logits (the API returns at most 20 logprobs) and whether a step that
// mixes prefill chunks and decodes gives the same numbers as running them separately.
//
// Per GPU backend (flashmla, cuda-mla), on the GPU-shaped fixture:
//   A. both fixture prompts prefilled in ONE step (query lengths 21 and 7), then 11 greedy decode
//      steps of both: logits vs transformers (rel L2 <= 2e-2), greedy vs transformers (>= 8 of 12);
//   B. a 150-token prompt prefilled in chunks of 64, 64, 22 while a second request prefills 40 and
//      then decodes one token per step in the same steps: the final logits of both against core's
//      fp32 reference-mla on the CPU (rel L2 <= 2e-2), and every chunk's logits against the same
//      chunks run one per step (mixed == separate, rel L2 <= 1e-2);
//   C. B's mixed schedule with FLASHSERVE_MLA_MAX_PIECE=1 (every query token its own s_q = 1 kernel
//      request: the plain decode path) against the default pieces of up to 64 (rel L2 <= 1e-2).
// Usage: node model-check.mjs <fixtureDir> [backend...]; writes $OUT/model-check.json when OUT is set.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AttentionBackend,
  attentionBackends,
  type CommonAttentionMetadata,
  CpuDevice,
  type Device,
  loadDeepseekConfig,
  type Model,
} from '@flashserve/core';
import { CudaDevice, cudaAvailability } from '@flashserve/cuda';
import '@flashserve/mla-backend';
import { loadDeepseekModel, mlaSpec } from '@flashserve/models';
import {
  fmt,
  GREEDY_MIN,
  LOGITS_TOL,
  loadExpected,
  printRows,
  type Row,
  relL2,
  samePrefix,
  syntheticPrompt,
} from './common.js';

const MIXED_TOL = 1e-2;
const BLOCK = 64;

/** Runs explicit steps (lists of [request, tokens]) through a model with its own block tables. */
class Driver {
  readonly #model: Model;
  readonly #free: number[];
  readonly #reqs: { tokens: number[]; computed: number; blocks: number[] }[] = [];

  constructor(model: Model, numBlocks = 96) {
    this.#model = model;
    model.allocateKvCache(numBlocks, BLOCK);
    // Block ids scrambled, block 0 unused, so that block tables are not the identity.
    this.#free = Array.from({ length: numBlocks - 1 }, (_, i) => 1 + ((i * 37) % (numBlocks - 1)));
  }

  add(tokens: readonly number[], room = 16): number {
    const n = Math.ceil((tokens.length + room) / BLOCK);
    if (n > this.#free.length) throw new Error('Driver: out of KV blocks');
    this.#reqs.push({ tokens: [...tokens], computed: 0, blocks: this.#free.splice(0, n) });
    return this.#reqs.length - 1;
  }

  append(req: number, token: number): void {
    this.#reqs[req]!.tokens.push(token);
  }

  /** One forward pass; returns the logits of each chunk's last token. */
  step(chunks: readonly (readonly [number, number])[]): Float32Array[] {
    const ids: number[] = [];
    const positions: number[] = [];
    const slots: number[] = [];
    const qsl = [0];
    const seqLens: number[] = [];
    const computed: number[] = [];
    const last: number[] = [];
    const mb = Math.max(...chunks.map(([r]) => this.#reqs[r]!.blocks.length));
    const table = new Int32Array(chunks.length * mb);
    chunks.forEach(([r, n], i) => {
      const q = this.#reqs[r]!;
      if (q.computed + n > q.tokens.length) throw new Error(`Driver: request ${r} has no ${n} more tokens`);
      for (let p = q.computed; p < q.computed + n; p++) {
        ids.push(q.tokens[p]!);
        positions.push(p);
        slots.push(q.blocks[Math.floor(p / BLOCK)]! * BLOCK + (p % BLOCK));
      }
      computed.push(q.computed);
      q.computed += n;
      seqLens.push(q.computed);
      qsl.push(ids.length);
      last.push(ids.length - 1);
      table.set(q.blocks, i * mb);
    });
    const attention: CommonAttentionMetadata = {
      numReqs: chunks.length,
      numTokens: ids.length,
      queryStartLoc: Int32Array.from(qsl),
      seqLens: Int32Array.from(seqLens),
      numComputedTokens: Int32Array.from(computed),
      positions: Int32Array.from(positions),
      slotMapping: Int32Array.from(slots),
      blockTables: table,
      maxBlocksPerReq: mb,
      blockSize: BLOCK,
      maxQueryLen: Math.max(...chunks.map(([, n]) => n)),
      maxSeqLen: Math.max(...seqLens),
    };
    const d = this.#model.device;
    const logits = this.#model.forward({
      tokenIds: Int32Array.from(ids),
      attention,
      logitsIndices: Int32Array.from(last),
    });
    const host = d.toHost(logits) as Float32Array;
    d.release(logits);
    const V = host.length / chunks.length;
    return chunks.map((_, i) => host.slice(i * V, (i + 1) * V));
  }
}

function argmax(x: Float32Array): number {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[b]!) b = i;
  return b;
}

type Schedule = (readonly (readonly [number, number])[])[];

/** B's schedule: request 0 = 150-token prompt in chunks, request 1 = 40-token prefill then decodes. */
const MIXED: Schedule = [
  [[1, 40]],
  [
    [1, 1],
    [0, 64],
  ],
  [
    [1, 1],
    [0, 64],
  ],
  [
    [1, 1],
    [0, 22],
  ],
  [[1, 1]],
];

function runSchedule(model: Model, prompts: readonly number[][], schedule: Schedule): Float32Array[][] {
  const drv = new Driver(model);
  for (const p of prompts) drv.add(p);
  return schedule.map((s) => drv.step(s));
}

function backendChecks(dir: string, device: Device, backend: AttentionBackend, vocab: number): Row[] {
  const rows: Row[] = [];
  const tag = `[${backend.name}]`;
  const load = () => loadDeepseekModel(dir, { device, backend });
  const exp = loadExpected(dir);

  // A. the fixture prompts in one mixed-length prefill step, then greedy decoding.
  {
    const drv = new Driver(load());
    const r0 = drv.add(exp.prompt);
    const r1 = drv.add(exp.prompt2);
    const [l0, l1] = drv.step([
      [r0, exp.prompt.length],
      [r1, exp.prompt2.length],
    ]) as [Float32Array, Float32Array];
    const got: number[][] = [[argmax(l0)], [argmax(l1)]];
    const steps = Math.min(exp.greedy.length, exp.greedy2.length);
    for (let s = 1; s < steps; s++) {
      drv.append(r0, got[0]!.at(-1)!);
      drv.append(r1, got[1]!.at(-1)!);
      const [a, b] = drv.step([
        [r0, 1],
        [r1, 1],
      ]) as [Float32Array, Float32Array];
      got[0]!.push(argmax(a));
      got[1]!.push(argmax(b));
    }
    [
      { logits: l0, ref: exp.logits, greedy: exp.greedy, out: got[0]! },
      { logits: l1, ref: exp.logits2, greedy: exp.greedy2, out: got[1]! },
    ].forEach((c, i) => {
      const e = relL2(c.logits, c.ref);
      rows.push({
        check: `${tag} A prompt ${i + 1} last-position logits vs transformers`,
        value: fmt(e),
        limit: fmt(LOGITS_TOL),
        ok: e <= LOGITS_TOL,
      });
      const same = samePrefix(c.out, c.greedy);
      rows.push({
        check: `${tag} A prompt ${i + 1} greedy tokens equal to transformers`,
        value: `${same}/${c.greedy.length}`,
        limit: `>=${GREEDY_MIN}`,
        ok: same >= GREEDY_MIN,
        ...(same < c.greedy.length ? { note: `got ${c.out.join(',')} want ${c.greedy.join(',')}` } : {}),
      });
    });
  }

  // B. chunked prefill mixed with decodes: vs the CPU fp32 reference, and vs one chunk per step.
  const long = syntheticPrompt(150, 7, vocab);
  const short = syntheticPrompt(44, 9, vocab);
  const mixed = runSchedule(load(), [long, short], MIXED);
  const separateSchedule: Schedule = MIXED.flatMap((s) => s.map((c) => [c]));
  const separate = runSchedule(load(), [long, short], separateSchedule);
  const flatMixed = mixed.flat();
  let worst = 0;
  flatMixed.forEach((l, i) => {
    worst = Math.max(worst, relL2(l, separate[i]![0]!));
  });
  rows.push({
    check: `${tag} B mixed steps vs one chunk per step (${flatMixed.length} chunks, worst)`,
    value: fmt(worst),
    limit: fmt(MIXED_TOL),
    ok: worst <= MIXED_TOL,
  });
  {
    const cpu = new CpuDevice();
    const ref = attentionBackends.get('reference-mla');
    const refModel = loadDeepseekModel(dir, { device: cpu, backend: ref });
    const drv = new Driver(refModel);
    const a = drv.add(long);
    const b = drv.add(short);
    const [ra] = drv.step([[a, long.length]]) as [Float32Array];
    const [rb] = drv.step([[b, short.length]]) as [Float32Array];
    const ga = mixed[3]![1]!; // request 0's last chunk
    const gb = mixed[4]![0]!; // request 1's last decode
    for (const [name, g, r] of [
      ['150-token prompt (chunks 64+64+22)', ga, ra],
      ['44-token request (40 + 4 decodes)', gb, rb],
    ] as const) {
      const e = relL2(g, r);
      rows.push({
        check: `${tag} B ${name} logits vs CPU fp32 reference`,
        value: fmt(e),
        limit: fmt(LOGITS_TOL),
        ok: e <= LOGITS_TOL,
      });
    }
  }

  // C. pieces of one query token (plain decode launches) vs pieces of up to 64.
  process.env.FLASHSERVE_MLA_MAX_PIECE = '1';
  let piece1: Float32Array[][];
  try {
    piece1 = runSchedule(load(), [long, short], MIXED);
  } finally {
    delete process.env.FLASHSERVE_MLA_MAX_PIECE;
  }
  let worstPiece = 0;
  piece1.flat().forEach((l, i) => {
    worstPiece = Math.max(worstPiece, relL2(l, flatMixed[i]!));
  });
  rows.push({
    check: `${tag} C pieces of 1 query token vs pieces of up to 64 (worst)`,
    value: fmt(worstPiece),
    limit: fmt(MIXED_TOL),
    ok: worstPiece <= MIXED_TOL,
  });
  return rows;
}

function main(): number {
  const dir = process.argv[2];
  if (dir === undefined) {
    console.log('usage: node model-check.mjs <fixtureDir> [backend...]');
    return 2;
  }
  // GPU_E2E_CPU_DRY_RUN=1: the same checks with core's CPU device and reference backend, to test
  // this script on a machine without a GPU.
  const dry = process.env.GPU_E2E_CPU_DRY_RUN === '1';
  const names =
    process.argv.length > 3 ? process.argv.slice(3) : dry ? ['reference-mla'] : ['flashmla', 'cuda-mla'];
  let device: Device;
  if (dry) device = new CpuDevice();
  else {
    const avail = cudaAvailability();
    if (!avail.available) {
      console.log(`CUDA unavailable: ${avail.reason}`);
      return 2;
    }
    const cuda = new CudaDevice();
    console.log(`device: ${cuda.info.name}, cuBLAS ${cuda.hasCublas}`);
    device = cuda;
  }
  const vocab = loadDeepseekConfig(dir).vocabSize;
  const rows: Row[] = [];
  for (const name of names) {
    const t0 = performance.now();
    try {
      const backend = attentionBackends.resolve(name, { device, model: mlaSpec(loadDeepseekConfig(dir)) });
      rows.push(...backendChecks(dir, device, backend, vocab));
    } catch (err) {
      rows.push({
        check: `[${name}] model checks`,
        value: 'threw',
        limit: '-',
        ok: false,
        note: (err as Error).stack?.split('\n').slice(0, 6).join('\n    '),
      });
    }
    console.log(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  if (process.env.OUT)
    writeFileSync(join(process.env.OUT, 'model-check.json'), JSON.stringify(rows, null, 1));
  printRows('model-direct checks (DeepseekModel on CudaDevice)', rows);
  const failed = rows.filter((r) => !r.ok).length;
  console.log(`model-check: ${failed === 0 ? 'ALL OK' : `${failed} FAILED`} (${rows.length} checks)`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = main();
