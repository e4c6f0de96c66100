// What `flashmla` and `cuda-mla` share: they run the same split-KV schedule, take the same arguments
// and differ only in the kernel launched (and the GPUs they accept). Not part of the public surface.
//
// Per step (metadata builder): the step's seqLens, block tables and slot mapping go to the GPU once,
// and the tile schedule (getMlaMetadata) is computed there from seqLens; every layer reuses it.
// Per layer (impl.forward), the absorbed form around the kernel:
//   qAbs   = [q_nope @ W_UK ; q_pe]                       [T, h, 576]   (CudaDevice.mlaAbsorbQuery)
//   kvWrite([cKv ; kPe] -> cache rows at slotMapping)
//   oLat   = mla decode over the paged cache              [T, h, 512]   (this addon)
//   out    = W_UV @ oLat per head                         [T, h, vHeadDim]
// With flashmla at up to MLA_UV_MAX_TOKENS tokens, the split-KV combine and the W_UV product are one
// launch (mlaDecodeUv: the same bf16 latent rows, projected in the same kernel) instead of the combine
// and a bmm; FLASHSERVE_MLA_NO_FUSED_UV=1 keeps them apart (A/B timing).
// Any step works: prefill chunks and decodes mixed, any query lengths (step-plan.ts). Each request's
// query tokens are cut into pieces of at most 64 (the kernels' s_q limit), each piece a causal kernel
// "request" of its own; consecutive pieces of one length are one launch. A decode-only step is one
// launch, as before.
import type {
  AttentionMetadataBuilder,
  BackendSelectionContext,
  CommonAttentionMetadata,
  Device,
  KvCache,
  KvCacheLayout,
  MlaAttentionImpl,
  MlaForwardInputs,
  MlaLayerWeights,
  MlaModelSpec,
  Tensor,
} from '@flashserve/core';
import type { CudaDevice, CudaTensor } from '@flashserve/cuda';
import { mlaAvailability, type NativeMla, requireMlaAddon } from '../addon.js';
import { MAX_PIECE_LEN, maxPieceFromEnv, planStep, type StepRun } from './step-plan.js';

export const KV_LORA_RANK = 512;
export const QK_ROPE_HEAD_DIM = 64;
export const ENTRY_WIDTH = KV_LORA_RANK + QK_ROPE_HEAD_DIM;
export const BLOCK_SIZE = 64;
/** Query tokens per kernel request (longer prefill chunks are cut into pieces of this many). */
export const MAX_QUERY_LEN = MAX_PIECE_LEN;
const SCHED_META_INTS = 8;
/** Tokens of a step up to which flashmla fuses the combine into W_UV (COMBINE_UV_MAX_TOKENS). */
export const MLA_UV_MAX_TOKENS = 4;
/** W_UV rows per block of the fused kernel: vHeadDim must be a multiple (COMBINE_UV_ROWS). */
const MLA_UV_ROW_GROUP = 32;

export type MlaKernel = 'flashmla' | 'cuda-mla';

/** Reasons shared by both backends; `minCc`/`maxCc` bound the compute capability (major*10+minor). */
export function gpuMlaReasons(
  name: string,
  ctx: BackendSelectionContext,
  minCc: number,
  maxCc: number,
): string[] {
  const reasons: string[] = [];
  const info = ctx.device.info;
  if (info.kind !== 'cuda') reasons.push(`needs a CUDA device (device is ${info.name})`);
  const avail = mlaAvailability();
  if (!avail.available) reasons.push(`the MLA addon is unavailable: ${avail.reason}`);
  const cc = info.computeCapability;
  if (info.kind === 'cuda' && (cc === undefined || cc < minCc || cc > maxCc)) {
    const want = minCc === maxCc ? `sm_${minCc}` : `sm_${minCc} or newer`;
    reasons.push(
      `needs ${want} (device is ${cc === undefined ? 'of unknown compute capability' : `sm_${cc}`})`,
    );
  }
  if (info.kind === 'cuda' && info.computeDType !== 'bf16')
    reasons.push(`needs bf16 activations (device computes in ${info.computeDType})`);
  const m = ctx.model;
  if (m.kvLoraRank !== KV_LORA_RANK)
    reasons.push(`needs kv_lora_rank ${KV_LORA_RANK} (model has ${m.kvLoraRank})`);
  if (m.qkRopeHeadDim !== QK_ROPE_HEAD_DIM)
    reasons.push(`needs qk_rope_head_dim ${QK_ROPE_HEAD_DIM} (model has ${m.qkRopeHeadDim})`);
  if (ctx.blockSize !== undefined && ctx.blockSize !== BLOCK_SIZE)
    reasons.push(`needs KV block size ${BLOCK_SIZE} (asked for ${ctx.blockSize})`);
  return reasons.map((r) => `${name} ${r}`);
}

export function gpuMlaCacheLayout(ctx: BackendSelectionContext): KvCacheLayout {
  return {
    blockSize: BLOCK_SIZE,
    entryWidth: ENTRY_WIDTH,
    dtype: 'bf16',
    bytesPerBlock: BLOCK_SIZE * ENTRY_WIDTH * 2 * ctx.model.numLayers,
  };
}

export function cudaDeviceOf(device: Device, op: string): CudaDevice {
  const d = device as Partial<CudaDevice>;
  if (device.info.kind !== 'cuda' || typeof d.stream !== 'bigint' || typeof d.enqueue !== 'function')
    throw new Error(`${op}: needs the CUDA device of @flashserve/cuda (got ${device.info.name})`);
  return device as CudaDevice;
}

function ptrOf(t: Tensor, op: string, what: string): bigint {
  const p = (t as Partial<CudaTensor>).ptr;
  if (typeof p !== 'bigint') throw new Error(`${op}: ${what} is not a CUDA tensor`);
  return p;
}

export function allocateGpuMlaCache(device: Device, layout: KvCacheLayout, numBlocks: number): KvCache {
  const d = cudaDeviceOf(device, 'allocateCache');
  return { layout, numBlocks, tensor: d.zeros([numBlocks, layout.blockSize, 1, layout.entryWidth], 'bf16') };
}

/** One launch of a step: a run of equal-length pieces with its own split-KV schedule. */
export interface GpuMlaLaunch {
  readonly run: StepRun;
  readonly numParts: number;
  /** i32 [numParts, 8] */
  readonly schedMeta: Tensor;
  /** i32 [run.numPieces + 1] */
  readonly numSplits: Tensor;
}

/** One step's metadata: the common batch, its device copies and one schedule per launch. */
export interface GpuMlaMetadata {
  readonly common: CommonAttentionMetadata;
  readonly numReqs: number;
  /** Kernel requests of the step (pieces of at most 64 query tokens). */
  readonly numPieces: number;
  /** i32: each launch's pieces' cache lengths from its `run.seqLensAt` (16-byte aligned segments) */
  readonly seqLens: Tensor;
  /** i32: each launch's pieces' block-table rows from its `run.tableAt` (stride maxBlocksPerReq) */
  readonly blockTables: Tensor;
  /** i32 [numTokens] */
  readonly slotMapping: Tensor;
  readonly launches: readonly GpuMlaLaunch[];
}

const I32_BYTES = 4;
const BF16_BYTES = 2;

export class GpuMlaMetadataBuilder implements AttentionMetadataBuilder<GpuMlaMetadata> {
  readonly #name: string;
  readonly #device: CudaDevice;
  readonly #model: MlaModelSpec;
  readonly #maxPiece: number;
  /** numSmParts by query rows: it runs before a replayed step's graph can launch, so once per shape. */
  readonly #partsByRows = new Map<number, number>();

  constructor(name: string, device: Device, model: MlaModelSpec) {
    this.#name = name;
    this.#device = cudaDeviceOf(device, `${name} metadata`);
    this.#model = model;
    this.#maxPiece = maxPieceFromEnv();
  }

  build(common: CommonAttentionMetadata): GpuMlaMetadata {
    const name = this.#name;
    const b = common.numReqs;
    if (b < 1) throw new Error(`${name}: a step needs at least one request`);
    if (common.blockSize !== BLOCK_SIZE)
      throw new Error(`${name}: block size must be ${BLOCK_SIZE} (got ${common.blockSize})`);
    if (common.slotMapping.length !== common.numTokens)
      throw new Error(
        `${name}: slotMapping has ${common.slotMapping.length} entries for ${common.numTokens} tokens`,
      );
    const plan = planStep(common, this.#maxPiece);
    const addon = requireMlaAddon();
    const d = this.#device;
    const numPieces = plan.pieceSeqLens.length;
    const seqLens = d.upload(plan.seqLensPadded, [plan.seqLensPadded.length], 'i32');
    const blockTables = d.upload(plan.blockTablesPadded, [plan.blockTablesPadded.length], 'i32');
    const slotMapping = d.upload(common.slotMapping, [common.numTokens], 'i32');
    const seqLensPtr = ptrOf(seqLens, name, 'seqLens');
    const launches: GpuMlaLaunch[] = [];
    for (const run of plan.runs) {
      const qRows = run.sQ * this.#model.numHeads;
      const numParts = this.#numSmParts(addon, qRows);
      const schedMeta = d.empty([numParts, SCHED_META_INTS], 'i32');
      const numSplits = d.empty([run.numPieces + 1], 'i32');
      const args = {
        cacheSeqlens: seqLensPtr + BigInt(run.seqLensAt * I32_BYTES),
        b: run.numPieces,
        qRows,
        numParts,
        schedMeta: schedMeta.ptr,
        numSplits: numSplits.ptr,
        stream: d.stream,
      };
      d.enqueue(() => addon.getMlaMetadata(args));
      launches.push({ run, numParts, schedMeta, numSplits });
    }
    return { common, numReqs: b, numPieces, seqLens, blockTables, slotMapping, launches };
  }

  #numSmParts(addon: ReturnType<typeof requireMlaAddon>, qRows: number): number {
    let parts = this.#partsByRows.get(qRows);
    if (parts === undefined) {
      parts = addon.numSmParts({ numSms: this.#device.multiProcessorCount, qRows });
      this.#partsByRows.set(qRows, parts);
    }
    return parts;
  }
}

export class GpuMlaImpl implements MlaAttentionImpl<GpuMlaMetadata> {
  readonly #kernel: MlaKernel;
  readonly #device: CudaDevice;
  readonly #model: MlaModelSpec;
  /** FLASHSERVE_MLA_NO_FUSED_UV=1: combine and W_UV as two launches even where one would do (A/B). */
  readonly #fusedUv: boolean;

  constructor(kernel: MlaKernel, device: Device, model: MlaModelSpec) {
    this.#kernel = kernel;
    this.#device = cudaDeviceOf(device, `${kernel} impl`);
    this.#model = model;
    this.#fusedUv = kernel === 'flashmla' && process.env.FLASHSERVE_MLA_NO_FUSED_UV !== '1';
  }

  /** Whether this step's combine folds into W_UV: few tokens and a contiguous bf16 [h, vHeadDim, 512]. */
  #fuseUv(T: number, wUv: Tensor): boolean {
    const { numHeads: h, vHeadDim } = this.#model;
    return (
      this.#fusedUv &&
      T <= MLA_UV_MAX_TOKENS &&
      vHeadDim % MLA_UV_ROW_GROUP === 0 &&
      wUv.dtype === 'bf16' &&
      wUv.shape.join() === `${h},${vHeadDim},${KV_LORA_RANK}` &&
      typeof (wUv as Partial<CudaTensor>).ptr === 'bigint'
    );
  }

  forward(
    inputs: MlaForwardInputs,
    cache: KvCache,
    weights: MlaLayerWeights,
    metadata: GpuMlaMetadata,
  ): Tensor {
    const op = `${this.#kernel} forward`;
    const d = this.#device;
    const addon: NativeMla = requireMlaAddon();
    const { numHeads: h, qkNopeHeadDim: nope, qkRopeHeadDim: rope, vHeadDim } = this.#model;
    const T = metadata.common.numTokens;
    const [qT, qH, qW] = inputs.q.shape as [number, number, number];
    if (qT !== T || qH !== h || qW !== nope + rope)
      throw new Error(`${op}: q is [${inputs.q.shape.join(', ')}], expected [${T}, ${h}, ${nope + rope}]`);
    if (inputs.cKv.shape.join() !== `${T},${KV_LORA_RANK}` || inputs.kPe.shape.join() !== `${T},${rope}`)
      throw new Error(`${op}: cKv must be [${T}, ${KV_LORA_RANK}] and kPe [${T}, ${rope}]`);
    const cachePtr = ptrOf(cache.tensor, op, 'cache');
    const kRowStride = ENTRY_WIDTH;
    const kBlockStride = BLOCK_SIZE * ENTRY_WIDTH;

    // 1-2. Absorb W_UK into the query: [T, h, 128] @ [h, 128, 512] -> [T, h, 512], with q_pe appended,
    //    read from q in place; and this step's latent rows into the cache (before attention: each
    //    token sees itself, and a prefill piece sees the pieces of its request before it). One launch
    //    at a decode step (CudaDevice.mlaAbsorbQuery), with PDL: it requests W_UK while the kernel
    //    before it drains.
    const qAbs = d.mlaAbsorbQuery(inputs.q, weights.wUk, {
      cache: cache.tensor,
      cKv: inputs.cKv,
      kPe: inputs.kPe,
      slotMapping: metadata.slotMapping,
    });

    // 3. Attention over the paged latent cache, one launch per run of equal-length pieces. A run's
    //    rows are contiguous in qAbs and out, so it is addressed by offsets (in bytes) alone.
    //    Fused (few tokens): each launch ends in W_UV and writes its tokens' rows of `result`.
    const fused = this.#fuseUv(T, weights.wUv);
    const result = fused ? d.empty([T, h, vHeadDim], 'bf16') : undefined;
    const wUvPtr = fused ? ptrOf(weights.wUv, op, 'wUv') : 0n;
    const out = d.empty([T, h, KV_LORA_RANK], 'bf16');
    const blockTablePtr = ptrOf(metadata.blockTables, op, 'blockTables');
    const seqLensPtr = ptrOf(metadata.seqLens, op, 'seqLens');
    const mb = metadata.common.maxBlocksPerReq;
    const launch = this.#kernel === 'flashmla' ? addon.mlaDecode : addon.mlaDecodePortable;
    for (const l of metadata.launches) {
      const { run, numParts } = l;
      const b = run.numPieces;
      const rows = run.sQ * h;
      const lse = d.empty([b, h, run.sQ], 'f32');
      const oAccum = d.empty([b + numParts, rows, KV_LORA_RANK], 'f32');
      const lseAccum = d.empty([b + numParts, rows], 'f32');
      const args = {
        b,
        sQ: run.sQ,
        hQ: h,
        q: qAbs.ptr + BigInt(run.tokenStart * h * ENTRY_WIDTH * BF16_BYTES),
        qBatchStride: rows * ENTRY_WIDTH,
        qRowStride: ENTRY_WIDTH,
        kcache: cachePtr,
        numBlocks: cache.numBlocks,
        kBlockStride,
        kRowStride,
        blockTable: blockTablePtr + BigInt(run.tableAt * I32_BYTES),
        blockTableStride: mb,
        maxBlocksPerSeq: mb,
        cacheSeqlens: seqLensPtr + BigInt(run.seqLensAt * I32_BYTES),
        out: out.ptr + BigInt(run.tokenStart * h * KV_LORA_RANK * BF16_BYTES),
        oBatchStride: rows * KV_LORA_RANK,
        oRowStride: KV_LORA_RANK,
        lse: lse.ptr,
        oAccum: oAccum.ptr,
        lseAccum: lseAccum.ptr,
        schedMeta: ptrOf(l.schedMeta, op, 'schedMeta'),
        numSplits: ptrOf(l.numSplits, op, 'numSplits'),
        numParts,
        softmaxScale: weights.softmaxScale,
        stream: d.stream,
      };
      if (result !== undefined) {
        const uvArgs = {
          ...args,
          wUv: wUvPtr,
          vDim: vHeadDim,
          result: result.ptr + BigInt(run.tokenStart * h * vHeadDim * BF16_BYTES),
        };
        d.enqueue(() => addon.mlaDecodeUv(uvArgs));
      } else {
        d.enqueue(() => launch.call(addon, args));
      }
      for (const t of [lse, oAccum, lseAccum]) d.release(t);
    }
    d.release(qAbs);
    if (result !== undefined) {
      d.release(out);
      return result;
    }

    // 4. Values per head: W_UV [h, vHeadDim, 512] @ oLat[t, h] -> [T, h, vHeadDim].
    const projected = d.bmm(out, weights.wUv, true);
    d.release(out);
    if (projected.shape.at(-1) !== vHeadDim)
      throw new Error(`${op}: W_UV gives ${projected.shape.at(-1)} values, expected ${vHeadDim}`);
    return projected;
  }
}
