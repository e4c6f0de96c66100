// The CUDA Device: every op of the core Device contract as one (or a few) kernel launches on the
// addon's single stream, bf16 storage with fp32 accumulation. TypeScript checks shapes and dtypes
// (where they live) and allocates outputs; the addon launches.
//
// Extras beyond the contract, for the GPU:
//   - `ptr` on tensors and `stream` on the device, so other addons launch on the same stream;
//   - `graph(key, fn)`: decode steps as CUDA graphs (see runGraph below);
//   - `enqueue(fn)`: for other addons' launches inside a graph-captured function;
//   - `sample(...)`: sampling on the GPU, and `sampleAsync` with `mergeTokenIds` for async scheduling
//     (a step's sampled ids feed the next step on the GPU); `kvCacheWrite`, `allocateKvCache`; `linearF32`;
//   - `mlaAbsorbQuery(q, wUk)`: the absorbed MLA query [q_nope @ W_UK ; q_pe] in place (GPU backends);
//   - `memStats`, `synchronize`, `emptyCache`, and `randomUniform` for dummy weights.
import type {
  Device,
  DeviceInfo,
  DType,
  GatedMlpWeights,
  HostData,
  MlaInputs,
  MoeExpertWeights,
  MoeRouteParams,
  MoeRouting,
  NormLinearResult,
  RopeStyle,
  RopeTable,
  Tensor,
} from '@flashserve/core';
import { addRmsNormLinearByParts, moeRouteExpertsByParts } from '@flashserve/core';
import { requireAddon } from './addon.js';
import {
  type KernelTimeline,
  type KernelTimelineLog,
  type L2PrefetchArgs,
  type MlaInputsArgs,
  type MoeExpertArgs,
  NATIVE_DTYPE,
  type NativeCuda,
  type NativeDType,
  type NativeMemStats,
  type RouterSettingsArgs,
} from './native.js';
import { type CudaDType, CudaTensor, elementBytes, numelOf, Storage } from './tensor.js';

export interface CudaDeviceOptions {
  /** CUDA device ordinal (default 0). */
  readonly deviceIndex?: number;
  /**
   * Benchmark hook for `--load-format dummy`: an upload whose host data is EMPTY while its shape is
   * not is filled on the GPU with uniform numbers of standard deviation 1/sqrt(last dim), from this
   * seed. Lets a dummy weight source skip generating gigabytes on the host.
   */
  readonly dummyEmptyUploadsSeed?: number;
}

/** Host-side per-row sampling parameters for `sample`. */
export interface GpuSamplingParams {
  /** [rows]; 0 means greedy. */
  readonly temperature: Float32Array;
  /** [rows]; 0 or >= vocab means off. */
  readonly topK: Int32Array;
  /** [rows]; 1 means off. */
  readonly topP: Float32Array;
  /** [rows]; 0 means off. */
  readonly minP: Float32Array;
  /** [rows] uniform numbers in [0, 1), drawn on the host from each request's generator. */
  readonly uniform: Float32Array;
  /** Top logprobs wanted per row (at most 20). */
  readonly numTopLogprobs?: number;
}

export interface GpuSamplingResult {
  readonly tokens: Int32Array;
  /** Log-softmax of the raw logits at each chosen token. */
  readonly logprobs: Float32Array;
  /** [rows * numTopLogprobs] ids and logprobs, best first (empty when none were asked for). */
  readonly topIds: Int32Array;
  readonly topLogprobs: Float32Array;
}

/** A sampleAsync() whose results are still on their way to the host. */
export interface PendingGpuSample {
  /** Blocks until the results are on the host (the step before them included) and returns them; the
   * same object on every call. */
  wait(): GpuSamplingResult;
}

/** The step's latent rows and where they go, for `mlaAbsorbQuery`. */
export interface MlaCacheWrite {
  /** Paged latent cache [numBlocks, blockSize, 1, L + rope] bf16 (rows are slots). */
  readonly cache: Tensor;
  /** [T, L] */
  readonly cKv: Tensor;
  /** [T, rope] */
  readonly kPe: Tensor;
  /** i32 [T]; a negative slot skips the row (padding rows of a decode graph). */
  readonly slotMapping: Tensor;
}

type GraphMode = 'eager' | 'capture' | 'replay';

/** An mlaInputs launch held back (see mlaInputs): its arguments, its outputs, and the storages of its
 * inputs and outputs, retained so that their memory cannot go back to the allocator (and be handed to
 * a later op) before it is enqueued. */
interface HeldMlaInputs {
  readonly args: MlaInputsArgs;
  readonly q: CudaTensor;
  readonly cKv: CudaTensor;
  readonly kPe: CudaTensor;
  readonly keep: readonly (Storage | undefined)[];
}

interface GraphRecord {
  id: number;
  readonly allocs: { ptr: bigint; bytes: number }[];
  outPtr: bigint;
  outShape: readonly number[];
  outDtype: CudaDType;
  /** Host inputs (uploads and writes) of the captured function: a replay launches the graph as soon
   * as the last one is written. */
  inputs: number;
  /** Where each upload's staging slot is in the graph arena (Runtime::graph_arena), and its bytes. */
  readonly slots: { offset: number; bytes: number }[];
  /** Whether a replay writes its inputs into their slots itself (plain stores into the arena, no
   * addon call each): every input an upload whose bytes go to the device as they are (i32, f32, raw
   * bf16 words), none a `write`. Else each input goes through the addon (conversions, side copies). */
  hostStaging: boolean;
}

/** Thrown inside a replay pass once the graph is launched, to cut the rest of the function short. */
const REPLAY_LAUNCHED = Symbol('graph replay launched');

const NULL = 0n;
const NO_PREFETCH: L2PrefetchArgs = [NULL, 0];

/** Most bytes of a prefetch hint requested into L2 (CudaDevice.prefetch).
 * NOTE: measured on H100 (V2-Lite shapes, batch 1, the shared experts' gate/up of 23 MB a layer hinted
 * before each MoE layer's attention; six interleaved rounds each, h100-l2-prefetch-2026-11-25.log): step
 * medians 2.485 ms with no prefetch, 2.445 at 4 MiB, 2.43 at 8, 2.45 at 11.5, 2.525 at 16 and 2.51 with
 * all 23 MB; in a second call 2.44 at 8 MiB against 2.47 with none (6 and 10 MiB: 2.435). Attention
 * leaves ~3 us of memory time idle a layer; past that the prefetch delays the weights the layer's next
 * kernels request (o_proj's, the router's). */
export const L2_PREFETCH_MAX_BYTES = 8 << 20;

function l2PrefetchMaxBytes(env: NodeJS.ProcessEnv): number {
  if (env.FLASHSERVE_NO_L2_PREFETCH === '1') return 0;
  const mb = Number(env.FLASHSERVE_L2_PREFETCH_MB);
  return env.FLASHSERVE_L2_PREFETCH_MB !== undefined && Number.isFinite(mb) && mb >= 0
    ? Math.floor(mb * (1 << 20)) & ~15
    : L2_PREFETCH_MAX_BYTES;
}

/** Most bytes one asynchronous download takes (Runtime::SMALL_DOWNLOAD_BYTES): sampleAsync's results. */
const DOWNLOAD_ASYNC_MAX_BYTES = 64 << 10;

/** Whether sampleAsync takes `rows` rows with `nTop` top logprobs each (its results fit one
 * asynchronous download); sample() takes any. */
export function sampleAsyncFits(rows: number, nTop: number): boolean {
  return (2 * rows + 2 * rows * nTop) * 4 <= DOWNLOAD_ASYNC_MAX_BYTES;
}

/** Up to this many tokens, bmm runs as one grouped-GEMM launch instead of cuBLASLt's batched GEMM. */
const BMM_GROUPED_MAX_TOKENS = 64;

/** Up to this many tokens, moeExperts runs routed and shared experts in three launches (moe_small.h)
 * instead of the grouped path; at most 8 (the kernels' limit). The small path reads per assignment
 * (~15% more expert bytes than the distinct experts at 4 tokens) but needs no sort and no combine;
 * FLASHSERVE_MOE_SMALL_MAX_TOKENS overrides it for A/B timing (0 turns it off). NOTE: 4 until the tenth
 * session's grouped-path changes; then, H100, V2-Lite shapes, three interleaved rounds, graph step ms:
 * batch 3 4.99 small against 5.00 grouped, batch 4 6.28 small against 5.89 grouped. */
const MOE_SMALL_MAX_TOKENS = 3;

/** Up to this many tokens (and on the small expert path), moeRouteExperts routes inside the expert
 * kernels instead of launching the router (moe_small.h, `route`). NOTE: one H100 call, interleaved
 * (scripts/bench/results/h100-router-fold-2026-11-25.log): batch-1 step 2.63 ms folded against 2.685
 * apart, batch 2 4.18 against 4.03: at 2 tokens the routing of both tokens in every block costs more
 * than the router's launch. */
const ROUTER_FOLD_MAX_TOKENS = 1;

/** Up to this many tokens, mlaInputs is held back to be folded into the next op if that is
 * mlaAbsorbQuery of its outputs (the skinny GEMV's 1-2 rows, where that op is one launch). */
const MLA_INPUTS_FOLD_MAX_TOKENS = 2;

/** addRmsNormLinear runs as one launch up to this many rows (the skinny GEMM's 1-2 rows, where
 * linear uses it too) and rows up to this wide (skinny_gemm.h: SKINNY_NORM_MAX_M, SKINNY_NORM_MAX_K). */
const NORM_LINEAR_MAX_ROWS = 2;
const NORM_LINEAR_MAX_K = 8192;

function moeSmallMaxTokens(): number {
  const v = process.env.FLASHSERVE_MOE_SMALL_MAX_TOKENS;
  if (v === undefined || v === '') return MOE_SMALL_MAX_TOKENS;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? Math.min(n, 8) : MOE_SMALL_MAX_TOKENS;
}

function native(d: CudaDType | 'f16'): NativeDType {
  return NATIVE_DTYPE[d];
}

/** MoeExpertWeights checked against the hidden size (CudaDevice.#expertWeights). */
interface ExpertTensors {
  gu: CudaTensor;
  dn: CudaTensor;
  E: number;
  I: number;
  shared: { gateUp: CudaTensor; down: CudaTensor; inter: number } | undefined;
}

/** The router kernels' settings for `params` (both V3 choices, sigmoid scores and top-2 group sums,
 * go with its noaux_tc routing). */
function routerSettingsArgs(params: MoeRouteParams): RouterSettingsArgs {
  const v3 = params.kind === 'v3-sigmoid';
  return [
    params.nGroup,
    params.topkGroup,
    v3 ? 1 : 0,
    v3 ? 1 : 0,
    params.normTopkProb,
    params.routedScalingFactor,
  ];
}

/** The expert ops' weight, output and shape arguments for T tokens of hidden size H. */
function moeExpertArgs(w: ExpertTensors, out: CudaTensor, T: number, H: number, topK: number): MoeExpertArgs {
  return [
    w.gu.ptr,
    w.dn.ptr,
    w.shared?.gateUp.ptr ?? NULL,
    w.shared?.down.ptr ?? NULL,
    out.ptr,
    T,
    H,
    w.I,
    w.shared?.inter ?? 0,
    w.E,
    topK,
  ];
}

/** Whether two float arrays hold the same bits (NaN and -0 included). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Int32Array(a.buffer, a.byteOffset, a.length);
  const y = new Int32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** A sampling kernel launched by CudaDevice.#launchSampling: its result buffer, [rows] token ids, then
 * [rows] logprobs, [rows, nTop] top ids and [rows, nTop] top logprobs (floats as raw bits), all i32. */
interface LaunchedSampling {
  readonly out: CudaTensor;
  readonly rows: number;
  readonly nTop: number;
}

/** The sampling results in a host copy of a LaunchedSampling's buffer. */
function samplingResult(host: Int32Array, rows: number, nTop: number): GpuSamplingResult {
  return {
    tokens: host.slice(0, rows),
    logprobs: new Float32Array(host.buffer.slice(rows * 4, 2 * rows * 4)),
    topIds: host.slice(2 * rows, 2 * rows + rows * nTop),
    topLogprobs: new Float32Array(
      host.buffer.slice((2 * rows + rows * nTop) * 4, (2 * rows + 2 * rows * nTop) * 4),
    ),
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fmtShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

export class CudaDevice implements Device {
  readonly info: DeviceInfo;
  /** The CUDA ordinal this device drives (its thread's runtime is bound to it). */
  readonly deviceIndex: number;
  /** cudaStream_t of the device's compute stream, as an integer. */
  readonly stream: bigint;
  readonly multiProcessorCount: number;
  readonly totalMemory: number;
  readonly hasCublas: boolean;
  readonly #addon: NativeCuda;
  readonly #free: (ptr: bigint) => void;
  readonly #dummySeed: number | undefined;
  #dummyCount = 0;
  #bytesUploaded = 0;
  #mode: GraphMode = 'eager';
  #graphs = new Map<string, GraphRecord>();
  #current: GraphRecord | undefined;
  /** The graph arena (Runtime::graph_arena: pinned, never moved), once a graph has been captured. */
  #arena: { i32: Int32Array; f32: Float32Array; u16: Uint16Array } | undefined;
  #replayIndex = 0;
  readonly #f32Cache = new WeakMap<Tensor, CudaTensor>();
  readonly #transposeCache = new WeakMap<Tensor, CudaTensor>();
  readonly #noGroupedBmm = process.env.FLASHSERVE_NO_GROUPED_BMM === '1';
  readonly #l2PrefetchMax = l2PrefetchMaxBytes(process.env);
  /** A weight the next absorbed-query launch requests into L2 (prefetch). */
  #prefetchHint: L2PrefetchArgs | undefined;
  /** A replay pass stops once the graph is launched (#inputWritten); FLASHSERVE_FULL_REPLAY=1 runs the
   * whole function as before (A/B timing, and a check that replays still match their captures). */
  readonly #cutReplays = process.env.FLASHSERVE_FULL_REPLAY !== '1';
  /** A/B timing: addRmsNormLinear as its two ops (FLASHSERVE_NO_NORM_LINEAR=1), and with the skinny
   * GEMM off (FLASHSERVE_NO_SKINNY_GEMM=1, whose norm form this is). */
  readonly #noNormLinear =
    process.env.FLASHSERVE_NO_NORM_LINEAR === '1' || process.env.FLASHSERVE_NO_SKINNY_GEMM === '1';
  readonly #moeSmallMaxTokens = moeSmallMaxTokens();
  /** A/B timing: FLASHSERVE_NO_MLA_INPUTS_FOLD=1 launches mlaInputs on its own at every size. */
  readonly #noMlaInputsFold = process.env.FLASHSERVE_NO_MLA_INPUTS_FOLD === '1';
  #heldMlaInputs: HeldMlaInputs | undefined;
  /** Graph replay: host inputs written so far, and whether the graph was launched after the last. */
  #replayInputs = 0;
  #launchedEarly = false;
  #profile: Map<string, { ms: number; calls: number }> | undefined;
  #lastSampling: { packed: Float32Array; tensor: CudaTensor } | undefined;

  constructor(options: CudaDeviceOptions = {}) {
    this.#addon = requireAddon() as NativeCuda;
    this.deviceIndex = options.deviceIndex ?? 0;
    const init = this.#addon.init(this.deviceIndex);
    this.stream = init.stream;
    this.multiProcessorCount = init.multiProcessorCount;
    this.totalMemory = init.totalMemory;
    this.hasCublas = init.cublas;
    this.info = {
      kind: 'cuda',
      name: `${init.name} (sm_${init.major}${init.minor})`,
      computeCapability: init.major * 10 + init.minor,
      computeDType: 'bf16',
    };
    const addon = this.#addon;
    this.#free = (ptr) => addon.free(ptr);
    this.#dummySeed = options.dummyEmptyUploadsSeed;
  }

  // --- tensors and memory ---------------------------------------------------------------------

  #t(x: Tensor, op: string, what: string): CudaTensor {
    if (!(x instanceof CudaTensor)) throw new Error(`${op}: ${what} is not a tensor of this CUDA device`);
    if (x.released) throw new Error(`${op}: ${what} was released`);
    return x;
  }

  /** A new output tensor (during a graph replay: the captured tensor at the same position). */
  #alloc(shape: readonly number[], dtype: CudaDType): CudaTensor {
    const bytes = numelOf(shape) * elementBytes(dtype);
    if (this.#mode === 'replay') {
      const rec = this.#current!.allocs[this.#replayIndex++];
      if (rec === undefined || rec.bytes !== bytes) {
        throw new Error(
          'graph replay diverged from its capture (a different sequence of tensors was asked for): ' +
            'the captured function must do the same ops on the same shapes every time',
        );
      }
      return new CudaTensor(shape, dtype, rec.ptr, undefined);
    }
    let ptr: bigint;
    try {
      ptr = this.#addon.alloc(bytes);
    } catch (err) {
      if ((err as { code?: string }).code !== 'CUDA_OUT_OF_MEMORY') throw err;
      const e = new Error(
        `${(err as Error).message} (tensor ${fmtShape(shape)} ${dtype}); the model and KV cache do not fit: ` +
          'lower --gpu-memory-utilization, --max-model-len or --max-num-seqs, or use a GPU with more memory',
      ) as Error & { code?: string; requestedBytes?: number };
      e.code = 'CUDA_OUT_OF_MEMORY';
      e.requestedBytes = bytes;
      throw e;
    }
    if (this.#mode === 'capture') this.#current!.allocs.push({ ptr, bytes });
    return new CudaTensor(shape, dtype, ptr, new Storage(ptr, bytes, this.#free));
  }

  /** Runs a launch unless a graph replay pass is in progress (the graph does the work then); a held
   * mlaInputs is enqueued first. */
  #launch(fn: () => void): void {
    if (this.#heldMlaInputs !== undefined) this.#releaseMlaInputs();
    if (this.#mode === 'replay') return;
    if (this.#profile === undefined || this.#mode !== 'eager') {
      fn();
      return;
    }
    this.#addon.synchronize();
    const t0 = performance.now();
    fn();
    this.#addon.synchronize();
    const dt = performance.now() - t0;
    // The op and its caller, from the stack: profiling only, so its cost does not matter.
    const frames = (new Error().stack ?? '').split('\n').slice(2, 5);
    const names = frames.map((f) => /at (?:new )?([\w.#<>]+)/.exec(f)?.[1] ?? '?');
    const key = `${names[1] ?? '?'} > ${(names[0] ?? '?').replace(/^CudaDevice\./, '')}`;
    const e = this.#profile.get(key) ?? { ms: 0, calls: 0 };
    e.ms += dt;
    e.calls++;
    this.#profile.set(key, e);
  }

  /** Starts per-op timing (eager runs only): every launch is synchronised and timed on the host. */
  startProfile(): void {
    this.#profile = new Map();
  }

  /** Stops per-op timing; returns [op, total ms, calls], slowest first (sync overhead included). */
  stopProfile(): [string, number, number][] {
    const p = this.#profile ?? new Map<string, { ms: number; calls: number }>();
    this.#profile = undefined;
    return [...p.entries()]
      .map(([k, v]): [string, number, number] => [k, v.ms, v.calls])
      .sort((a, b) => b[1] - a[1]);
  }

  /**
   * Measurement only: logs when each kernel of ours started its real work on the GPU (after its
   * programmatic wait), in up to `capacity` stamps, and notes the name of every launch made from now
   * on (so a graph captured after this call names its replays' stamps). See csrc/kernels/timeline.h.
   * Returns the device log, for the MLA addon's kernels to stamp into as well.
   */
  startTimeline(capacity: number): KernelTimelineLog {
    return this.#addon.timelineStart(capacity);
  }

  /** The stamps since the last take (and the launches noted since startTimeline). */
  takeTimeline(): KernelTimeline {
    return this.#addon.timelineTake();
  }

  stopTimeline(): void {
    this.#addon.timelineStop();
  }

  /** For other addons' launches on `stream` inside a function run through `graph()`. */
  enqueue(fn: () => void): void {
    this.#launch(fn);
  }

  /** Allocates an output tensor the way ops do (graph-aware), for other addons' kernels to fill. */
  empty(shape: readonly number[], dtype: 'f32' | 'bf16' | 'i32'): CudaTensor {
    return this.#alloc(shape, dtype);
  }

  upload(data: HostData, shape: readonly number[], dtype: DType): Tensor {
    const n = numelOf(shape);
    const target: CudaDType = dtype === 'i32' ? 'i32' : 'bf16';
    if (data.length === 0 && n > 0 && this.#dummySeed !== undefined && target === 'bf16') {
      return this.randomUniform(
        shape,
        this.#dummySeed * 1000003 + this.#dummyCount++,
        1 / Math.sqrt(shape.at(-1) ?? 1),
      );
    }
    this.#checkHost(data, n, dtype, 'upload');
    const out = this.#alloc(shape, target);
    this.#stage(out, data, dtype);
    this.#bytesUploaded += out.bytes;
    return out;
  }

  /** An upload's copy: queued (eager), captured with its staging slot, or, on a replay pass, written
   * into that slot, by plain stores where the graph allows it (GraphRecord.hostStaging). `dtype`: what
   * the host data holds (f16 words arrive as a Uint16Array too, converted to bf16 by the addon). */
  #stage(out: CudaTensor, data: HostData, dtype: DType): void {
    const rec = this.#current;
    if (this.#mode === 'replay' && rec!.hostStaging) {
      const slot = rec!.slots[this.#replayInputs];
      if (slot === undefined || slot.bytes !== out.bytes || data.byteLength !== out.bytes) {
        throw new Error(
          'graph replay diverged from its capture (a different sequence of uploads): ' +
            'the captured function must do the same ops on the same shapes every time',
        );
      }
      const arena = this.#arena!;
      // Typed views of the arena (slots are 256-byte aligned): one element copy, no view per call.
      if (data instanceof Int32Array) arena.i32.set(data, slot.offset >> 2);
      else if (data instanceof Float32Array) arena.f32.set(data, slot.offset >> 2);
      else arena.u16.set(data, slot.offset >> 1);
      this.#inputWritten();
      return;
    }
    const slotOffset: number | undefined = this.#addon.upload(
      out.ptr,
      data,
      native(dtype),
      native(out.cudaDtype),
      out.numel,
    );
    if (this.#mode === 'capture') {
      if (slotOffset === undefined) rec!.hostStaging = false;
      else rec!.slots.push({ offset: slotOffset, bytes: out.bytes });
      // The host bytes are the device bytes only without a conversion.
      if (dtype !== out.cudaDtype) rec!.hostStaging = false;
      if (this.#arena === undefined) {
        const buf = this.#addon.graphArena();
        this.#arena = { i32: new Int32Array(buf), f32: new Float32Array(buf), u16: new Uint16Array(buf) };
      }
    }
    this.#inputWritten();
  }

  /** After an upload or a write: counted at capture; during a replay, the last one launches the graph,
   * so the rest of the replay pass (host work only) overlaps the GPU running the step. */
  #inputWritten(): void {
    if (this.#mode === 'capture') this.#current!.inputs++;
    else if (this.#mode === 'replay' && ++this.#replayInputs === this.#current!.inputs) {
      const rec = this.#current!;
      this.#addon.launchGraph(rec.id, rec.hostStaging ? rec.slots.length : 0);
      this.#launchedEarly = true;
      // NOTE: what the function does after its last input is device work only (Device.graph), which
      // the launched graph does: replaying the rest of it (~300 ops of bookkeeping for V2-Lite's 27
      // layers, 1-3 ms of host time) would only race the GPU for the step's time. So it stops here.
      if (this.#cutReplays) throw REPLAY_LAUNCHED;
    }
  }

  /** Bytes uploaded so far (weights included): for a loading progress bar. */
  get bytesUploaded(): number {
    return this.#bytesUploaded;
  }

  /**
   * Reads a tensor straight from a file into device memory (chunks go through pinned staging, with no
   * host copy of the whole tensor): `shape` elements of `fileDtype` at `byteOffset`. Eager only.
   */
  uploadFromFile(path: string, byteOffset: number, shape: readonly number[], fileDtype: DType): CudaTensor {
    const n = numelOf(shape);
    const target: CudaDType = fileDtype === 'i32' ? 'i32' : 'bf16';
    const out = this.#alloc(shape, target);
    this.#addon.uploadFromFile(out.ptr, path, byteOffset, native(fileDtype), native(target), n);
    this.#bytesUploaded += out.bytes;
    return out;
  }

  /** Like upload, but keeps f32 on the device (router biases, sampling parameters). */
  uploadF32(data: Float32Array, shape: readonly number[]): CudaTensor {
    const n = numelOf(shape);
    this.#checkHost(data, n, 'f32', 'upload');
    const out = this.#alloc(shape, 'f32');
    this.#stage(out, data, 'f32');
    return out;
  }

  #checkHost(data: HostData, n: number, dtype: DType, op: string): void {
    if (data.length !== n) throw new Error(`${op}: ${data.length} host elements for a tensor of ${n}`);
    const ok =
      dtype === 'f32'
        ? data instanceof Float32Array
        : dtype === 'i32'
          ? data instanceof Int32Array
          : data instanceof Uint16Array;
    if (!ok) throw new Error(`${op}: host data of type ${data.constructor.name} does not encode ${dtype}`);
  }

  write(dst: Tensor, data: HostData, dtype: DType): void {
    const t = this.#t(dst, 'write', 'dst');
    this.#releaseMlaInputs(); // dst may be one of its inputs
    this.#checkHost(data, t.numel, dtype, 'write');
    if ((t.dtype === 'i32') !== (dtype === 'i32'))
      throw new Error(`write: ${dtype} data into a ${t.dtype} tensor`);
    this.#addon.write(t.ptr, data, native(dtype), native(t.cudaDtype), t.numel);
    if (this.#mode === 'capture') this.#current!.hostStaging = false;
    this.#inputWritten();
  }

  zeros(shape: readonly number[], dtype: DType): Tensor {
    const d: CudaDType = dtype === 'i32' ? 'i32' : dtype === 'f32' ? 'f32' : 'bf16';
    const out = this.#alloc(shape, d);
    this.#launch(() => this.#addon.memsetZero(out.ptr, out.bytes));
    return out;
  }

  toHost(t: Tensor): Float32Array | Int32Array {
    const x = this.#t(t, 'toHost', 'tensor');
    if (this.#mode !== 'eager') throw new Error('toHost: not allowed inside a function run through graph()');
    this.#releaseMlaInputs();
    const out = x.dtype === 'i32' ? new Int32Array(x.numel) : new Float32Array(x.numel);
    this.#addon.download(x.ptr, native(x.cudaDtype), x.numel, out);
    return out;
  }

  release(t: Tensor): void {
    if (t instanceof CudaTensor) t.release();
  }

  /** Waits for all queued work; throws naming the failure if an op failed on the GPU. */
  synchronize(): void {
    this.#releaseMlaInputs();
    this.#addon.synchronize();
  }

  memStats(): NativeMemStats {
    return this.#addon.memStats();
  }

  emptyCache(): void {
    this.#addon.emptyCache();
  }

  /** Uniform numbers of standard deviation `std` (range +-sqrt(3) std), generated on the GPU. Eager, and
   * complete on return: kernels may read weights before waiting for the kernel before them (PDL,
   * csrc/kernels/launch.h), so weights made by a kernel are finished before anything uses them. */
  randomUniform(shape: readonly number[], seed: number, std: number): CudaTensor {
    const out = this.#alloc(shape, 'bf16');
    const a = Math.sqrt(3) * std;
    const s = Math.floor(Math.abs(seed)) % 2 ** 52;
    this.#launch(() =>
      this.#addon.fillRandom(
        out.ptr,
        NATIVE_DTYPE.bf16,
        out.numel,
        s % 2 ** 32,
        Math.floor(s / 2 ** 32),
        -a,
        a,
      ),
    );
    if (this.#mode === 'eager') this.#addon.synchronize();
    return out;
  }

  /** Device-to-device copy bandwidth in GB/s (bytes read + written), measured over 1 GiB copies. */
  measureCopyBandwidth(bytes = 2 ** 30, iters = 10): number {
    const a = this.#alloc([bytes / 4], 'f32');
    const b = this.#alloc([bytes / 4], 'f32');
    this.#addon.memsetZero(a.ptr, bytes);
    this.#addon.copyDevice(b.ptr, a.ptr, bytes);
    this.#addon.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) this.#addon.copyDevice(b.ptr, a.ptr, bytes);
    this.#addon.synchronize();
    const s = (performance.now() - t0) / 1000;
    a.release();
    b.release();
    return (2 * bytes * iters) / s / 1e9;
  }

  /** A paged latent KV cache [numBlocks, blockSize, 1, entryWidth] bf16, zeroed. */
  allocateKvCache(numBlocks: number, blockSize = 64, entryWidth = 576): CudaTensor {
    const bytes = numBlocks * blockSize * entryWidth * 2;
    try {
      return this.zeros([numBlocks, blockSize, 1, entryWidth], 'bf16') as CudaTensor;
    } catch (err) {
      throw new Error(
        `out of GPU memory allocating the KV cache (${numBlocks} blocks, ${(bytes / 2 ** 20).toFixed(0)} MiB); ` +
          `lower --gpu-memory-utilization or --max-model-len / --num-gpu-blocks: ${(err as Error).message}`,
      );
    }
  }

  // --- layout ---------------------------------------------------------------------------------

  reshape(x: Tensor, shape: readonly number[]): Tensor {
    const t = this.#t(x, 'reshape', 'x');
    if (numelOf(shape) !== t.numel)
      throw new Error(`reshape: ${fmtShape(t.shape)} has ${t.numel} elements, not ${fmtShape(shape)}`);
    return t.view(shape);
  }

  sliceLast(x: Tensor, start: number, size: number): Tensor {
    const t = this.#t(x, 'sliceLast', 'x');
    const D = t.shape.at(-1) ?? 1;
    if (start < 0 || size < 0 || start + size > D)
      throw new Error(`sliceLast: [${start}, ${start + size}) outside last dim ${D}`);
    const rows = t.numel / D;
    const bytes = elementBytes(t.cudaDtype);
    // One row (a decode step of one token), or whole rows: the slice is contiguous, so a view.
    // NOTE: views start at 16-byte multiples only when start * bytes is one; kernels that need aligned
    // rows (the skinny GEMM) check and fall back.
    if (rows === 1 || size === D) return t.viewAt([...t.shape.slice(0, -1), size], start * bytes);
    const out = this.#alloc([...t.shape.slice(0, -1), size], t.cudaDtype);
    this.#launch(() =>
      this.#addon.copy2d(
        t.ptr + BigInt(start * bytes),
        out.ptr,
        native(t.cudaDtype),
        native(t.cudaDtype),
        rows,
        size,
        D,
        size,
      ),
    );
    return out;
  }

  concatLast(parts: readonly Tensor[]): Tensor {
    if (parts.length === 0) throw new Error('concatLast: no parts');
    const ts = parts.map((p, i) => this.#t(p, 'concatLast', `parts[${i}]`));
    const first = ts[0]!;
    const lead = first.shape.slice(0, -1);
    const dtype = first.cudaDtype;
    let total = 0;
    for (const t of ts) {
      if (!sameShape(t.shape.slice(0, -1), lead) || t.cudaDtype !== dtype) {
        throw new Error(`concatLast: parts ${fmtShape(first.shape)} and ${fmtShape(t.shape)} do not match`);
      }
      total += t.shape.at(-1) ?? 1;
    }
    const rows = numelOf(lead);
    const out = this.#alloc([...lead, total], dtype);
    const bytes = elementBytes(dtype);
    this.#launch(() => {
      let at = 0;
      for (const t of ts) {
        const w = t.shape.at(-1) ?? 1;
        this.#addon.copy2d(
          t.ptr,
          out.ptr + BigInt(at * bytes),
          native(dtype),
          native(dtype),
          rows,
          w,
          w,
          total,
        );
        at += w;
      }
    });
    return out;
  }

  // --- dense math -----------------------------------------------------------------------------

  embedding(table: Tensor, ids: Tensor): Tensor {
    const tb = this.#t(table, 'embedding', 'table');
    const ix = this.#t(ids, 'embedding', 'ids');
    if (tb.shape.length !== 2) throw new Error(`embedding: table must be [V, H], got ${fmtShape(tb.shape)}`);
    if (ix.dtype !== 'i32') throw new Error('embedding: ids must be i32');
    const [V, H] = tb.shape as [number, number];
    const out = this.#alloc([ix.numel, H], tb.cudaDtype);
    this.#launch(() =>
      this.#addon.gatherRows(ix.ptr, tb.ptr, out.ptr, ix.numel, V, H, elementBytes(tb.cudaDtype)),
    );
    return out;
  }

  /** Async scheduling's input ids: out[i] = prev[rows[i]] when rows[i] >= 0 (a token the previous step
   * sampled, still on the GPU), else ids[i] (from the host). ids, rows i32 [T]; prev i32 [M]. A row of
   * M or more takes ids[i] too: rows live on the device, where they cannot be checked. */
  mergeTokenIds(ids: Tensor, prev: Tensor, rows: Tensor): Tensor {
    const op = 'mergeTokenIds';
    const it = this.#t(ids, op, 'ids');
    const pt = this.#t(prev, op, 'prev');
    const rt = this.#t(rows, op, 'rows');
    for (const [name, t] of [
      ['ids', it],
      ['prev', pt],
      ['rows', rt],
    ] as const) {
      if (t.dtype !== 'i32') throw new Error(`${op}: ${name} must be i32, got ${t.dtype}`);
      if (t.shape.length !== 1) throw new Error(`${op}: ${name} must be 1-D, got ${fmtShape(t.shape)}`);
    }
    if (rt.numel !== it.numel)
      throw new Error(`${op}: rows ${fmtShape(rt.shape)} does not match ids ${fmtShape(it.shape)}`);
    const T = it.numel;
    const out = this.#alloc([T], 'i32');
    this.#launch(() => this.#addon.mergeTokenIds(out.ptr, it.ptr, pt.ptr, rt.ptr, T, pt.numel));
    return out;
  }

  #bf16(x: CudaTensor, op: string): CudaTensor {
    if (x.dtype === 'bf16') return x;
    if (x.dtype !== 'f32') throw new Error(`${op}: expected a floating-point tensor, got ${x.dtype}`);
    const out = this.#alloc(x.shape, 'bf16');
    this.#launch(() =>
      this.#addon.copy2d(x.ptr, out.ptr, NATIVE_DTYPE.f32, NATIVE_DTYPE.bf16, 1, x.numel, x.numel, x.numel),
    );
    return out;
  }

  #f32(x: CudaTensor): CudaTensor {
    if (x.dtype === 'f32') return x;
    const out = this.#alloc(x.shape, 'f32');
    this.#launch(() =>
      this.#addon.copy2d(x.ptr, out.ptr, NATIVE_DTYPE.bf16, NATIVE_DTYPE.f32, 1, x.numel, x.numel, x.numel),
    );
    return out;
  }

  #linear(x: Tensor, w: Tensor, bias: Tensor | undefined, outDtype: CudaDType, op: string): CudaTensor {
    const xt = this.#bf16(this.#t(x, op, 'x'), op);
    const wt = this.#t(w, op, 'w');
    if (wt.shape.length !== 2 || wt.dtype !== 'bf16')
      throw new Error(`${op}: w must be bf16 [N, K], got ${fmtShape(wt.shape)}`);
    const [N, K] = wt.shape as [number, number];
    if ((xt.shape.at(-1) ?? 0) !== K)
      throw new Error(`${op}: x ${fmtShape(xt.shape)} does not end in K=${K} of w ${fmtShape(wt.shape)}`);
    const M = xt.numel / K;
    let bt: CudaTensor | undefined;
    if (bias !== undefined) {
      bt = this.#t(bias, op, 'bias');
      if (bt.numel !== N || outDtype !== 'bf16')
        throw new Error(`${op}: bias must be [${N}] with a bf16 output`);
    }
    const out = this.#alloc([...xt.shape.slice(0, -1), N], outDtype);
    this.#launch(() =>
      this.#addon.gemm(
        xt.ptr,
        wt.ptr,
        out.ptr,
        native(outDtype),
        M,
        N,
        K,
        K,
        K,
        N,
        true,
        1,
        0,
        0,
        0,
        bt?.ptr ?? NULL,
      ),
    );
    return out;
  }

  linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    return this.#linear(x, w, bias, 'bf16', 'linear');
  }

  /** linear with an fp32 output (router logits as transformers computes them, lm_head logits). */
  linearF32(x: Tensor, w: Tensor): CudaTensor {
    return this.#linear(x, w, undefined, 'f32', 'linearF32');
  }

  bmm(x: Tensor, w: Tensor, transposeW: boolean): Tensor {
    const xt = this.#bf16(this.#t(x, 'bmm', 'x'), 'bmm');
    const wt = this.#t(w, 'bmm', 'w');
    if (xt.shape.length !== 3 || wt.shape.length !== 3)
      throw new Error('bmm: x must be [T, h, a] and w [h, *, *]');
    const [T, h, a] = xt.shape as [number, number, number];
    const [wh, w1, w2] = wt.shape as [number, number, number];
    const b = transposeW ? w1 : w2;
    if (wh !== h || (transposeW ? w2 : w1) !== a) {
      throw new Error(
        `bmm: w ${fmtShape(wt.shape)} does not fit x ${fmtShape(xt.shape)} (transposeW ${transposeW})`,
      );
    }
    const out = this.#alloc([T, h, b], 'bf16');
    if (T <= BMM_GROUPED_MAX_TOKENS && a % 8 === 0 && !this.#noGroupedBmm) {
      // Decode sizes: one grouped-GEMM launch over the heads, weights as [h, b, a] (a transposed copy
      // is made once for the [h, a, b] layout). cuBLASLt's strided-batched GEMM took 20-30 us here.
      const wNk = transposeW ? wt : this.#transposedWeight(wt);
      this.#launch(() => this.#addon.bmmGrouped(xt.ptr, wNk.ptr, out.ptr, T, h, a, b));
      return out;
    }
    // Per head i: out[:, i, :] = x[:, i, :] @ op(w[i]); rows of x and out are strided by h * width.
    this.#launch(() =>
      this.#addon.gemm(
        xt.ptr,
        wt.ptr,
        out.ptr,
        NATIVE_DTYPE.bf16,
        T,
        b,
        a,
        h * a,
        transposeW ? a : b,
        h * b,
        transposeW,
        h,
        a,
        w1 * w2,
        b,
        NULL,
      ),
    );
    return out;
  }

  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const xt = this.#bf16(this.#t(x, 'rmsNorm', 'x'), 'rmsNorm');
    const wt = this.#t(w, 'rmsNorm', 'w');
    const D = xt.shape.at(-1) ?? 1;
    if (wt.numel !== D) throw new Error(`rmsNorm: w has ${wt.numel} elements for rows of ${D}`);
    const out = this.#alloc(xt.shape, 'bf16');
    this.#launch(() => this.#addon.rmsNorm(xt.ptr, NULL, wt.ptr, out.ptr, NULL, xt.numel / D, D, eps));
    return out;
  }

  addRmsNorm(
    x: Tensor,
    residual: Tensor,
    w: Tensor,
    eps: number,
  ): { readonly out: Tensor; readonly residual: Tensor } {
    const xt = this.#bf16(this.#t(x, 'addRmsNorm', 'x'), 'addRmsNorm');
    const rt = this.#bf16(this.#t(residual, 'addRmsNorm', 'residual'), 'addRmsNorm');
    const wt = this.#t(w, 'addRmsNorm', 'w');
    if (!sameShape(xt.shape, rt.shape))
      throw new Error(`addRmsNorm: x ${fmtShape(xt.shape)} and residual ${fmtShape(rt.shape)} differ`);
    const D = xt.shape.at(-1) ?? 1;
    if (wt.numel !== D) throw new Error(`addRmsNorm: w has ${wt.numel} elements for rows of ${D}`);
    const out = this.#alloc(xt.shape, 'bf16');
    const res = this.#alloc(xt.shape, 'bf16');
    this.#launch(() => this.#addon.rmsNorm(xt.ptr, rt.ptr, wt.ptr, out.ptr, res.ptr, xt.numel / D, D, eps));
    return { out, residual: res };
  }

  /** Device.addRmsNormLinear. At 1-2 rows (a decode step) one launch: the skinny GEMV's norm form
   * (csrc/kernels/skinny_gemm.h), where every block normalises the rows itself, bitwise what
   * addRmsNorm + linear give; otherwise, or with FLASHSERVE_NO_NORM_LINEAR=1 (A/B timing), those two
   * ops. */
  addRmsNormLinear(
    x: Tensor,
    residual: Tensor | undefined,
    normWeight: Tensor,
    eps: number,
    w: Tensor,
    bias?: Tensor,
    keepNormed = false,
  ): NormLinearResult {
    const op = 'addRmsNormLinear';
    const xt = this.#t(x, op, 'x');
    const rt = residual === undefined ? undefined : this.#t(residual, op, 'residual');
    const nt = this.#t(normWeight, op, 'normWeight');
    const wt = this.#t(w, op, 'w');
    const bt = bias === undefined ? undefined : this.#t(bias, op, 'bias');
    const K = xt.shape.at(-1) ?? 1;
    const M = xt.numel / K;
    const aligned = (t: CudaTensor | undefined): boolean => t === undefined || t.ptr % 16n === 0n;
    const fused =
      !this.#noNormLinear &&
      M >= 1 &&
      M <= NORM_LINEAR_MAX_ROWS &&
      K % 8 === 0 &&
      K <= NORM_LINEAR_MAX_K &&
      xt.dtype === 'bf16' &&
      (rt === undefined || (rt.dtype === 'bf16' && sameShape(rt.shape, xt.shape))) &&
      nt.dtype === 'bf16' &&
      nt.numel === K &&
      wt.dtype === 'bf16' &&
      wt.shape.length === 2 &&
      wt.shape[1] === K &&
      (bt === undefined || bt.numel === wt.shape[0]) &&
      [xt, rt, nt, wt].every(aligned);
    if (!fused) return addRmsNormLinearByParts(this, xt, rt, nt, eps, wt, bt, keepNormed);
    const N = wt.shape[0]!;
    const out = this.#alloc([...xt.shape.slice(0, -1), N], 'bf16');
    const sum = rt === undefined ? undefined : this.#alloc(xt.shape, 'bf16');
    const normed = keepNormed ? this.#alloc(xt.shape, 'bf16') : undefined;
    this.#launch(() =>
      this.#addon.normLinear(
        xt.ptr,
        rt?.ptr ?? NULL,
        nt.ptr,
        wt.ptr,
        bt?.ptr ?? NULL,
        out.ptr,
        NATIVE_DTYPE.bf16,
        sum?.ptr ?? NULL,
        normed?.ptr ?? NULL,
        M,
        N,
        K,
        eps,
      ),
    );
    return { out, residual: sum, normed };
  }

  #axpby(a: CudaTensor, b: CudaTensor | undefined, alpha: number, beta: number): CudaTensor {
    const outDtype: CudaDType = a.dtype === 'f32' && (b === undefined || b.dtype === 'f32') ? 'f32' : 'bf16';
    const out = this.#alloc(a.shape, outDtype);
    this.#launch(() =>
      this.#addon.axpby(
        a.ptr,
        b?.ptr ?? NULL,
        out.ptr,
        native(a.cudaDtype),
        native(b?.cudaDtype ?? 'bf16'),
        native(outDtype),
        a.numel,
        alpha,
        beta,
      ),
    );
    return out;
  }

  add(a: Tensor, b: Tensor): Tensor {
    const at = this.#t(a, 'add', 'a');
    const bt = this.#t(b, 'add', 'b');
    if (!sameShape(at.shape, bt.shape))
      throw new Error(`add: shapes ${fmtShape(at.shape)} and ${fmtShape(bt.shape)} differ`);
    if (at.dtype === 'i32' || bt.dtype === 'i32') throw new Error('add: integer tensors are not supported');
    return this.#axpby(at, bt, 1, 1);
  }

  scale(x: Tensor, s: number): Tensor {
    const xt = this.#t(x, 'scale', 'x');
    if (xt.dtype === 'i32') throw new Error('scale: integer tensors are not supported');
    return this.#axpby(xt, undefined, s, 0);
  }

  siluAndMul(x: Tensor): Tensor {
    const xt = this.#bf16(this.#t(x, 'siluAndMul', 'x'), 'siluAndMul');
    const D = xt.shape.at(-1) ?? 0;
    if (D % 2 !== 0) throw new Error(`siluAndMul: last dim ${D} is odd`);
    const rows = xt.numel / D;
    const out = this.#alloc([...xt.shape.slice(0, -1), D / 2], 'bf16');
    this.#launch(() => this.#addon.siluMul(xt.ptr, out.ptr, rows, D / 2));
    return out;
  }

  rope(x: Tensor, positions: Tensor, table: RopeTable, style: RopeStyle): Tensor {
    const xt = this.#bf16(this.#t(x, 'rope', 'x'), 'rope');
    const pt = this.#t(positions, 'rope', 'positions');
    const cos = this.#bf16(this.#t(table.cos, 'rope', 'table.cos'), 'rope');
    const sin = this.#bf16(this.#t(table.sin, 'rope', 'table.sin'), 'rope');
    if (xt.shape.length !== 3) throw new Error(`rope: x must be [T, h, D], got ${fmtShape(xt.shape)}`);
    const [T, h, D] = xt.shape as [number, number, number];
    if (pt.dtype !== 'i32' || pt.numel !== T) throw new Error(`rope: positions must be i32 [${T}]`);
    if (table.rotaryDim > D || table.rotaryDim % 2 !== 0)
      throw new Error(`rope: rotaryDim ${table.rotaryDim} does not fit head dim ${D}`);
    if (cos.numel !== table.maxPositions * (table.rotaryDim / 2))
      throw new Error('rope: table.cos is not [maxPositions, rotaryDim / 2]');
    const out = this.#alloc(xt.shape, 'bf16');
    this.#launch(() =>
      this.#addon.rope(
        xt.ptr,
        out.ptr,
        pt.ptr,
        cos.ptr,
        sin.ptr,
        T,
        h,
        D,
        table.rotaryDim,
        table.maxPositions,
        style === 'interleave',
      ),
    );
    return out;
  }

  /** Device.mlaInputs. At 1-2 tokens the launch is held back and folded into mlaAbsorbQuery when
   * that comes next with its outputs (see #releaseMlaInputs); FLASHSERVE_NO_MLA_INPUTS_FOLD=1 turns
   * that off (A/B timing). */
  mlaInputs(
    q: Tensor,
    kv: Tensor,
    positions: Tensor,
    table: RopeTable,
    style: RopeStyle,
    kvNorm: Tensor,
    eps: number,
  ): MlaInputs {
    const qt = this.#bf16(this.#t(q, 'mlaInputs', 'q'), 'mlaInputs');
    const kt = this.#bf16(this.#t(kv, 'mlaInputs', 'kv'), 'mlaInputs');
    const pt = this.#t(positions, 'mlaInputs', 'positions');
    const nt = this.#t(kvNorm, 'mlaInputs', 'kvNorm');
    const cos = this.#bf16(this.#t(table.cos, 'mlaInputs', 'table.cos'), 'mlaInputs');
    const sin = this.#bf16(this.#t(table.sin, 'mlaInputs', 'table.sin'), 'mlaInputs');
    if (qt.shape.length !== 3) throw new Error(`mlaInputs: q must be [T, h, D], got ${fmtShape(qt.shape)}`);
    const [T, h, D] = qt.shape as [number, number, number];
    const R = table.rotaryDim;
    const L = (kt.shape.at(-1) ?? 0) - R;
    if (kt.shape.length !== 2 || kt.shape[0] !== T || L <= 0)
      throw new Error(`mlaInputs: kv ${fmtShape(kt.shape)} is not [${T}, L + ${R}]`);
    if (nt.numel !== L) throw new Error(`mlaInputs: kvNorm has ${nt.numel} elements for a latent of ${L}`);
    if (pt.dtype !== 'i32' || pt.numel !== T) throw new Error(`mlaInputs: positions must be i32 [${T}]`);
    if (R > D || R % 2 !== 0) throw new Error(`mlaInputs: rotaryDim ${R} does not fit head dim ${D}`);
    if (cos.numel !== table.maxPositions * (R / 2))
      throw new Error('mlaInputs: table.cos is not [maxPositions, rotaryDim / 2]');
    const qOut = this.#alloc(qt.shape, 'bf16');
    const cKv = this.#alloc([T, L], 'bf16');
    const kPe = this.#alloc([T, R], 'bf16');
    const args: MlaInputsArgs = [
      qt.ptr,
      kt.ptr,
      pt.ptr,
      cos.ptr,
      sin.ptr,
      nt.ptr,
      qOut.ptr,
      cKv.ptr,
      kPe.ptr,
      T,
      h,
      D,
      R,
      L,
      table.maxPositions,
      eps,
      style === 'interleave',
    ];
    if (T <= MLA_INPUTS_FOLD_MAX_TOKENS && !this.#noMlaInputsFold) {
      this.#releaseMlaInputs();
      const keep = [qt, kt, pt, nt, cos, sin, qOut, cKv, kPe].map((t) => t.retainStorage());
      this.#heldMlaInputs = { args, q: qOut, cKv, kPe, keep };
    } else {
      this.#launch(() => this.#addon.mlaInputs(...args));
    }
    return { q: qOut, cKv, kPe };
  }

  /**
   * Enqueues a held-back mlaInputs (nothing when none is held). At 1-2 tokens mlaInputs holds its
   * launch back: if the next op is mlaAbsorbQuery of its outputs, that op launches both as one kernel
   * (the model hands them straight to the attention backend, which starts with it); anything else
   * first comes here: every launch (#launch, other addons' `enqueue`), `write`, `toHost`,
   * `synchronize` and graph boundaries. So the outputs hold mlaInputs' values whenever anything could
   * read them, and a graph replay, doing the same ops, makes the same choice as its capture.
   * NOTE: other addons must launch on `stream` through `enqueue` (as inside graphs) to see them.
   */
  #releaseMlaInputs(): void {
    const held = this.#heldMlaInputs;
    if (held === undefined) return;
    this.#heldMlaInputs = undefined;
    this.#launch(() => this.#addon.mlaInputs(...held.args));
    for (const s of held.keep) s?.drop();
  }

  /** The held mlaInputs when q, cKv and kPe are its outputs and its latent is `latent` (taken: the
   * caller launches it); otherwise it is enqueued here and the answer is undefined. */
  #takeMlaInputs(
    q: CudaTensor,
    cKv: CudaTensor | undefined,
    kPe: CudaTensor | undefined,
    latent: number,
  ): HeldMlaInputs | undefined {
    const held = this.#heldMlaInputs;
    if (held === undefined) return undefined;
    if (
      held.q !== q ||
      (cKv !== undefined && held.cKv !== cKv) ||
      (kPe !== undefined && held.kPe !== kPe) ||
      held.cKv.shape[1] !== latent
    ) {
      this.#releaseMlaInputs();
      return undefined;
    }
    this.#heldMlaInputs = undefined;
    return held;
  }

  /**
   * A hint that `t` (a weight) is read later in this step: the next absorbed-query launch of one or two
   * tokens (mlaAbsorbQuery) requests its first L2_PREFETCH_MAX_BYTES into L2 before its PDL wait, so
   * that they stream in while attention, latency-bound at a decode step's sizes, leaves memory
   * bandwidth idle. Models call it with the MLP's first weight (a dense gate/up, or the shared experts')
   * before a layer's attention. A hint no such launch takes (larger steps) is replaced by the next one.
   * FLASHSERVE_NO_L2_PREFETCH=1 turns it off, FLASHSERVE_L2_PREFETCH_MB=<n> sets the cap (A/B).
   */
  prefetch(t: Tensor): void {
    // A hint never fails a step: a tensor of another device or a released one is not fetched (nor is a
    // start the bulk prefetch cannot take: run_skinny_gemm drops it).
    if (this.#l2PrefetchMax === 0 || !(t instanceof CudaTensor) || t.released) return;
    this.#prefetchHint = [t.ptr, Math.min(t.bytes, this.#l2PrefetchMax)];
  }

  #takePrefetch(): L2PrefetchArgs {
    const hint = this.#prefetchHint ?? NO_PREFETCH;
    this.#prefetchHint = undefined;
    return hint;
  }

  /**
   * The absorbed MLA query of the GPU attention backends: q [T, h, nope + rope] and W_UK [h, nope, L]
   * -> [T, h, L + rope] = [q_nope @ W_UK ; q_pe] per head, reading q in place (bmm + two slices + a
   * concatenation otherwise). With `cacheWrite`, also writes the step's latent rows [cKv ; kPe] into
   * the paged cache at their slots (as kvCacheWrite). One launch for both at a token or two, which
   * also computes q, cKv and kPe when they are the outputs of an mlaInputs held back (#takeMlaInputs).
   */
  mlaAbsorbQuery(q: Tensor, wUk: Tensor, cacheWrite?: MlaCacheWrite): CudaTensor {
    const qt = this.#bf16(this.#t(q, 'mlaAbsorbQuery', 'q'), 'mlaAbsorbQuery');
    const wt = this.#t(wUk, 'mlaAbsorbQuery', 'wUk');
    if (qt.shape.length !== 3 || wt.shape.length !== 3)
      throw new Error('mlaAbsorbQuery: q must be [T, h, nope + rope] and wUk [h, nope, L]');
    const [T, h, width] = qt.shape as [number, number, number];
    const [wh, nope, L] = wt.shape as [number, number, number];
    const rope = width - nope;
    if (wh !== h || rope < 0)
      throw new Error(`mlaAbsorbQuery: wUk ${fmtShape(wt.shape)} does not fit q ${fmtShape(qt.shape)}`);
    const out = this.#alloc([T, h, L + rope], 'bf16');
    if (T <= BMM_GROUPED_MAX_TOKENS && !this.#noGroupedBmm) {
      const wT = this.#transposedWeight(wt);
      const cw = cacheWrite === undefined ? undefined : this.#checkCacheWrite(cacheWrite, T, L, rope);
      const held = this.#takeMlaInputs(qt, cw?.cKv, cw?.kPe, L);
      if (held !== undefined) {
        // mlaInputs folded in: q, cKv and kPe are its outputs, computed by this launch too.
        this.#launch(() =>
          this.#addon.mlaInputsAbsorbQuery(
            ...held.args,
            wT.ptr,
            out.ptr,
            cw?.slots.ptr ?? NULL,
            cw?.cache.ptr ?? NULL,
            cw?.numSlots ?? 0,
            ...this.#takePrefetch(),
          ),
        );
        for (const s of held.keep) s?.drop();
        return out;
      }
      this.#launch(() =>
        this.#addon.mlaAbsorbQuery(
          qt.ptr,
          wT.ptr,
          out.ptr,
          T,
          h,
          nope,
          rope,
          L,
          cw?.cKv.ptr ?? NULL,
          cw?.kPe.ptr ?? NULL,
          cw?.slots.ptr ?? NULL,
          cw?.cache.ptr ?? NULL,
          cw?.numSlots ?? 0,
          ...this.#takePrefetch(),
        ),
      );
      return out;
    }
    if (cacheWrite !== undefined)
      this.kvCacheWrite(cacheWrite.cache, cacheWrite.cKv, cacheWrite.kPe, cacheWrite.slotMapping);
    // Per head i: out[:, i, :L] = q[:, i, :nope] @ W_UK[i], rows strided by the heads; then q_pe.
    this.#launch(() => {
      this.#addon.gemm(
        qt.ptr,
        wt.ptr,
        out.ptr,
        NATIVE_DTYPE.bf16,
        T,
        L,
        nope,
        h * width,
        L,
        h * (L + rope),
        false,
        h,
        width,
        nope * L,
        L + rope,
        NULL,
      );
      this.#addon.copy2d(
        qt.ptr + BigInt(nope * 2),
        out.ptr + BigInt(L * 2),
        NATIVE_DTYPE.bf16,
        NATIVE_DTYPE.bf16,
        T * h,
        rope,
        width,
        L + rope,
      );
    });
    return out;
  }

  #checkCacheWrite(
    w: MlaCacheWrite,
    T: number,
    L: number,
    rope: number,
  ): { cKv: CudaTensor; kPe: CudaTensor; slots: CudaTensor; cache: CudaTensor; numSlots: number } {
    const op = 'mlaAbsorbQuery';
    const cKv = this.#t(w.cKv, op, 'cKv');
    const kPe = this.#t(w.kPe, op, 'kPe');
    const slots = this.#t(w.slotMapping, op, 'slotMapping');
    const cache = this.#t(w.cache, op, 'cache');
    if (!sameShape(cKv.shape, [T, L]) || !sameShape(kPe.shape, [T, rope]))
      throw new Error(`${op}: cKv must be [${T}, ${L}] and kPe [${T}, ${rope}]`);
    if (slots.dtype !== 'i32' || slots.numel !== T) throw new Error(`${op}: slotMapping must be i32 [${T}]`);
    if (cache.dtype !== 'bf16' || (cache.shape.at(-1) ?? 0) !== L + rope)
      throw new Error(`${op}: cache rows must be bf16 of ${L + rope}`);
    return { cKv, kPe, slots, cache, numSlots: cache.numel / (L + rope) };
  }

  // --- mixture of experts ---------------------------------------------------------------------

  moeRoute(routerLogits: Tensor, params: MoeRouteParams): MoeRouting {
    const { lt, T, E, bias } = this.#routerInputs(routerLogits, params, 'moeRoute');
    const k = params.topK;
    const ids = this.#alloc([T, k], 'i32');
    const weights = this.#alloc([T, k], 'f32');
    this.#launch(() =>
      this.#addon.moeRoute(
        lt.ptr,
        bias?.ptr ?? NULL,
        ids.ptr,
        weights.ptr,
        T,
        E,
        k,
        ...routerSettingsArgs(params),
        lt.dtype === 'bf16',
      ),
    );
    return { ids, weights };
  }

  /** The router's logits [T, E] (f32 or bf16) and its correction bias as f32, checked for `op`. */
  #routerInputs(
    routerLogits: Tensor,
    params: MoeRouteParams,
    op: string,
  ): { lt: CudaTensor; T: number; E: number; bias: CudaTensor | undefined } {
    const lt = this.#t(routerLogits, op, 'routerLogits');
    if ((lt.dtype !== 'f32' && lt.dtype !== 'bf16') || lt.shape.length !== 2)
      throw new Error(
        `${op}: routerLogits must be f32 or bf16 [T, E], got ${lt.dtype} ${fmtShape(lt.shape)}`,
      );
    const [T, E] = lt.shape as [number, number];
    let bias: CudaTensor | undefined;
    if (params.correctionBias !== undefined) {
      const b = this.#t(params.correctionBias, op, 'correctionBias');
      if (b.numel !== E) throw new Error(`${op}: correctionBias has ${b.numel} elements for ${E} experts`);
      bias = this.#cachedF32(b);
    }
    return { lt, T, E, bias };
  }

  /** The experts' weights, checked for `op`: gateUp [E, 2I, H], down [E, H, I], the shared MLP's. */
  #expertWeights(experts: MoeExpertWeights, H: number, op: string): ExpertTensors {
    const gu = this.#t(experts.gateUp, op, 'experts.gateUp');
    const dn = this.#t(experts.down, op, 'experts.down');
    const [E, I2, H2] = gu.shape as [number, number, number];
    const I = I2 / 2;
    if (gu.shape.length !== 3 || H2 !== H || I2 % 2 !== 0)
      throw new Error(`${op}: gateUp ${fmtShape(gu.shape)} is not [E, 2I, ${H}]`);
    if (!sameShape(dn.shape, [E, H, I]))
      throw new Error(`${op}: down ${fmtShape(dn.shape)} is not [${E}, ${H}, ${I}]`);
    const shared = experts.shared === undefined ? undefined : this.#sharedExperts(experts.shared, H);
    return { gu, dn, E, I, shared };
  }

  /** [g, r, c] -> [g, c, r] copy of a persistent bf16 weight, made once (bmm's grouped path). */
  #transposedWeight(t: CudaTensor): CudaTensor {
    let c = this.#transposeCache.get(t);
    if (c === undefined) {
      if (this.#mode !== 'eager') throw new Error('bmm: run the model once eagerly before capturing a graph');
      const [g, r, cols] = t.shape as [number, number, number];
      const out = this.#alloc([g, cols, r], 'bf16');
      this.#addon.transpose(t.ptr, out.ptr, g, r, cols);
      // Complete before use: the skinny kernel reads weights before its PDL wait (randomUniform).
      this.#addon.synchronize();
      c = out;
      this.#transposeCache.set(t, c);
    }
    return c;
  }

  /** f32 copy of a persistent tensor, made once (router biases are read every step). */
  #cachedF32(t: CudaTensor): CudaTensor {
    if (t.dtype === 'f32') return t;
    let c = this.#f32Cache.get(t);
    if (c === undefined) {
      if (this.#mode !== 'eager')
        throw new Error('moeRoute: run the model once eagerly before capturing a graph');
      c = this.#f32(t);
      this.#f32Cache.set(t, c);
    }
    return c;
  }

  moeExperts(x: Tensor, routing: MoeRouting, experts: MoeExpertWeights): Tensor {
    const xt = this.#bf16(this.#t(x, 'moeExperts', 'x'), 'moeExperts');
    const ids = this.#t(routing.ids, 'moeExperts', 'routing.ids');
    const w = this.#f32(this.#t(routing.weights, 'moeExperts', 'routing.weights'));
    if (xt.shape.length !== 2) throw new Error(`moeExperts: x must be [T, H], got ${fmtShape(xt.shape)}`);
    const [T, H] = xt.shape as [number, number];
    const weights = this.#expertWeights(experts, H, 'moeExperts');
    const k = ids.shape[1] ?? 0;
    if (ids.dtype !== 'i32' || !sameShape(ids.shape, [T, k]))
      throw new Error(`moeExperts: routing.ids must be i32 [${T}, k]`);
    const out = this.#alloc([T, H], 'bf16');
    const args = [xt.ptr, ids.ptr, w.ptr, ...moeExpertArgs(weights, out, T, H, k)] as const;
    // The grouped path runs the shared experts itself (beside the routed ones, ops_moe.cc).
    this.#launch(() =>
      T <= this.#moeSmallMaxTokens ? this.#addon.moeExpertsSmall(...args) : this.#addon.moeExperts(...args),
    );
    return out;
  }

  /** A/B timing: FLASHSERVE_NO_ROUTER_FOLD=1 runs moeRouteExperts as moeRoute then moeExperts at every
   * size (the router kernel on its own). */
  readonly #noRouterFold = process.env.FLASHSERVE_NO_ROUTER_FOLD === '1';

  /** moeRoute then moeExperts. Up to ROUTER_FOLD_MAX_TOKENS tokens (on the small expert path) the
   * expert kernels route for themselves from the logits, with the router kernel's code (moe_small.h,
   * `route`): one launch fewer and no ids or weights in memory; the same output bit for bit. Past the
   * small path, one call of the grouped path routes and then runs the experts, so the shared experts
   * run beside the router too (ops_moe.cc); the same output bit for bit as by parts. */
  moeRouteExperts(
    x: Tensor,
    routerLogits: Tensor,
    params: MoeRouteParams,
    experts: MoeExpertWeights,
  ): Tensor {
    const op = 'moeRouteExperts';
    const T = this.#t(routerLogits, op, 'routerLogits').shape[0] ?? 0;
    // Folded into the small expert kernels at a token; by parts up to the small path's limit; one call
    // of the grouped path beyond it (which routes, then runs the experts, the shared ones beside).
    const small = T <= this.#moeSmallMaxTokens;
    if (this.#noRouterFold || (small && T > ROUTER_FOLD_MAX_TOKENS))
      return moeRouteExpertsByParts(this, x, routerLogits, params, experts);
    const { lt, E, bias } = this.#routerInputs(routerLogits, params, op);
    const xt = this.#bf16(this.#t(x, op, 'x'), op);
    if (xt.shape.length !== 2 || xt.shape[0] !== T)
      throw new Error(`${op}: x must be [${T}, H], got ${fmtShape(xt.shape)}`);
    const H = xt.shape[1]!;
    const weights = this.#expertWeights(experts, H, op);
    if (weights.E !== E) throw new Error(`${op}: ${weights.E} experts' weights for router logits over ${E}`);
    const out = this.#alloc([T, H], 'bf16');
    const args = [
      lt.ptr,
      bias?.ptr ?? NULL,
      lt.dtype === 'bf16',
      ...routerSettingsArgs(params),
      xt.ptr,
      ...moeExpertArgs(weights, out, T, H, params.topK),
    ] as const;
    this.#launch(() =>
      small ? this.#addon.moeRouteExpertsSmall(...args) : this.#addon.moeRouteExperts(...args),
    );
    return out;
  }

  #sharedExperts(s: GatedMlpWeights, H: number): { gateUp: CudaTensor; down: CudaTensor; inter: number } {
    const gateUp = this.#t(s.gateUp, 'moeExperts', 'experts.shared.gateUp');
    const down = this.#t(s.down, 'moeExperts', 'experts.shared.down');
    const inter = (gateUp.shape[0] ?? 0) / 2;
    if (gateUp.shape.length !== 2 || gateUp.shape[1] !== H || !Number.isInteger(inter))
      throw new Error(`moeExperts: shared.gateUp ${fmtShape(gateUp.shape)} is not [2S, ${H}]`);
    if (!sameShape(down.shape, [H, inter]))
      throw new Error(`moeExperts: shared.down ${fmtShape(down.shape)} is not [${H}, ${inter}]`);
    return { gateUp, down, inter };
  }

  // --- attention helpers ----------------------------------------------------------------------

  /** Writes [cKv ; kPe] rows into a paged cache at their slots (slot < 0 skips a padding row). */
  kvCacheWrite(cache: Tensor, cKv: Tensor, kPe: Tensor, slotMapping: Tensor): void {
    const c = this.#t(cache, 'kvCacheWrite', 'cache');
    const ck = this.#t(cKv, 'kvCacheWrite', 'cKv');
    const kp = this.#t(kPe, 'kvCacheWrite', 'kPe');
    const sl = this.#t(slotMapping, 'kvCacheWrite', 'slotMapping');
    const width = c.shape.at(-1) ?? 0;
    const R = ck.shape.at(-1) ?? 0;
    const P = kp.shape.at(-1) ?? 0;
    const T = sl.numel;
    if (R + P !== width || ck.numel !== T * R || kp.numel !== T * P) {
      throw new Error(
        `kvCacheWrite: cKv ${fmtShape(ck.shape)} + kPe ${fmtShape(kp.shape)} do not fill cache rows of ${width}`,
      );
    }
    this.#launch(() =>
      this.#addon.kvCacheWrite(ck.ptr, kp.ptr, sl.ptr, c.ptr, T, R, P, R, P, c.numel / width),
    );
  }

  // --- sampling -------------------------------------------------------------------------------

  /** Samples one token per row of logits [rows, V] on the GPU; only ids and logprobs come back. */
  sample(logits: Tensor, params: GpuSamplingParams): GpuSamplingResult {
    const { out, rows, nTop } = this.#launchSampling('sample', logits, params, undefined);
    const result = samplingResult(this.toHost(out) as Int32Array, rows, nTop);
    out.release();
    return result;
  }

  /**
   * sample() without waiting for it (async scheduling): the kernel writes the token ids into `into`
   * (i32, at least `rows` elements, e.g. a buffer the next step's mergeTokenIds reads), and ids and
   * logprobs come back to the host through a download queued behind it; `wait()` blocks for that and
   * returns what sample() would have. Wait before four more asynchronous downloads (sampleAsync calls)
   * are queued: the fourth takes this one's pinned slot, and its wait() throws then. Eager only.
   */
  sampleAsync(logits: Tensor, params: GpuSamplingParams, into: Tensor): PendingGpuSample {
    const op = 'sampleAsync';
    if (this.#mode !== 'eager') throw new Error(`${op}: not allowed inside a function run through graph()`);
    const tokens = this.#t(into, op, 'into');
    const { out, rows, nTop } = this.#launchSampling(op, logits, params, tokens);
    // The ids next to the logprobs, so one download brings back the same buffer sample() reads.
    this.#launch(() => this.#addon.copyDevice(out.ptr, tokens.ptr, rows * 4));
    let ticket: number;
    try {
      ticket = this.#addon.downloadAsync(out.ptr, out.bytes);
    } finally {
      // NOTE: safe with the download still queued: the allocator hands the block out again only to
      // work queued after it on the same stream (csrc/runtime/allocator.h).
      out.release();
    }
    const addon = this.#addon;
    const numel = out.numel;
    let result: GpuSamplingResult | undefined;
    return {
      wait: () => {
        if (result === undefined) {
          const host = new Int32Array(numel);
          addon.downloadWait(ticket, host);
          result = samplingResult(host, rows, nTop);
        }
        return result;
      },
    };
  }

  /**
   * sample()'s and sampleAsync()'s launch: checks the arguments for `op`, uploads the packed parameters
   * and launches the sampling kernel. Its results go to a new i32 buffer laid out as samplingResult()
   * reads it, token ids first, except that with `into` (sampleAsync) the kernel writes the ids there
   * instead, their part of the buffer left for the caller to fill, and the buffer must fit one
   * asynchronous download.
   */
  #launchSampling(
    op: string,
    logits: Tensor,
    params: GpuSamplingParams,
    into: CudaTensor | undefined,
  ): LaunchedSampling {
    const lt = this.#t(logits, op, 'logits');
    if (lt.shape.length !== 2) throw new Error(`${op}: logits must be [rows, V], got ${fmtShape(lt.shape)}`);
    const [rows, V] = lt.shape as [number, number];
    const nTop = params.numTopLogprobs ?? 0;
    for (const [name, arr] of Object.entries({
      temperature: params.temperature,
      topK: params.topK,
      topP: params.topP,
      minP: params.minP,
      uniform: params.uniform,
    })) {
      if (arr.length !== rows) throw new Error(`${op}: ${name} has ${arr.length} entries for ${rows} rows`);
    }
    const outElems = 2 * rows + 2 * rows * nTop;
    if (into !== undefined) {
      if (into.dtype !== 'i32' || into.numel < rows)
        throw new Error(
          `${op}: into must be i32 with at least ${rows} elements, got ${fmtShape(into.shape)} ${into.dtype}`,
        );
      if (!sampleAsyncFits(rows, nTop))
        throw new Error(
          `${op}: ${rows} rows with ${nTop} top logprobs are ${outElems * 4} bytes of results, ` +
            `more than one asynchronous download takes (${DOWNLOAD_ASYNC_MAX_BYTES}); use sample()`,
        );
    }
    // One upload and one download per call (each is a copy queued behind the step): the parameters
    // travel packed (top-k as raw i32 bits after the floats), and token ids and logprobs come back in
    // one buffer (logprobs as raw f32 bits after the ids).
    const packed = new Float32Array(5 * rows);
    packed.set(params.temperature, 0);
    packed.set(params.topP, rows);
    packed.set(params.minP, 2 * rows);
    packed.set(params.uniform, 3 * rows);
    new Int32Array(packed.buffer, 16 * rows, rows).set(params.topK);
    const fparams = this.#samplingParams(packed);
    const out = this.#alloc([outElems], 'i32');
    const at = (t: CudaTensor, elems: number): bigint => t.ptr + BigInt(elems * 4);
    this.#launch(() =>
      this.#addon.sample(
        lt.ptr,
        lt.dtype === 'bf16',
        rows,
        V,
        fparams.ptr,
        at(fparams, 4 * rows),
        at(fparams, rows),
        at(fparams, 2 * rows),
        at(fparams, 3 * rows),
        into?.ptr ?? out.ptr,
        at(out, rows),
        nTop,
        nTop > 0 ? at(out, 2 * rows) : NULL,
        nTop > 0 ? at(out, 2 * rows + rows * nTop) : NULL,
      ),
    );
    return { out, rows, nTop };
  }

  /** The packed sampling parameters on the device: the last call's buffer when they are the same bits
   * (every step of a greedy batch), so the step does not queue a copy before the sampling kernel. */
  #samplingParams(packed: Float32Array): CudaTensor {
    const last = this.#lastSampling;
    if (last !== undefined && sameBits(last.packed, packed)) return last.tensor;
    last?.tensor.release();
    this.#lastSampling = undefined;
    const tensor = this.uploadF32(packed, [packed.length]);
    this.#lastSampling = { packed, tensor };
    return tensor;
  }

  // --- CUDA graphs ----------------------------------------------------------------------------

  /** Whether ops are being captured or replayed right now (other addons: skip launches on replay). */
  get graphMode(): GraphMode {
    return this.#mode;
  }

  /**
   * Runs `fn` (one forward pass) through a CUDA graph kept under `key`:
   *   1st call: eager (warms up lazily created state: cuBLASLt plans, cached casts);
   *   2nd call: captured into a graph, which is then launched;
   *   later:    a replay pass: `fn` runs again but no op launches; each op gets the tensor it got at
   *             capture, each upload writes its host data into the staging slot the graph copies
   *             from (each `write` refills its buffer), and the graph is launched as soon as the
   *             last of these host inputs is written, which ends the pass: the rest of `fn` is device
   *             work only (Device.graph), so it is cut short and the captured result returned (a
   *             function that writes its inputs first gains most; FLASHSERVE_FULL_REPLAY=1 runs it
   *             to the end, overlapping the GPU, and checks it still matches the capture). A
   *             function without host inputs runs to the end and launches the graph then.
   * `fn` must do the same ops on the same shapes each time (a decode step padded to a fixed batch
   * size, one key per size). Its returned tensor stays valid until the next graph launch. Other
   * addons launching inside `fn` must go through `enqueue` and allocate through `empty`.
   */
  graph(key: string, fn: () => Tensor): Tensor {
    const rec = this.#graphs.get(key);
    if (this.#mode !== 'eager') throw new Error('graph: graphs do not nest');
    this.#releaseMlaInputs(); // before a capture begins: not part of the graph
    if (rec === undefined) {
      this.#graphs.set(key, {
        id: -1,
        allocs: [],
        outPtr: NULL,
        outShape: [],
        outDtype: 'bf16',
        inputs: 0,
        slots: [],
        hostStaging: true,
      });
      return fn();
    }
    if (rec.id < 0) {
      this.#current = rec;
      this.#addon.beginCapture();
      this.#mode = 'capture';
      let out: CudaTensor;
      try {
        out = this.#t(fn(), 'graph', 'the captured function result');
        this.#releaseMlaInputs();
        rec.id = this.#addon.endCapture();
      } catch (err) {
        this.#dropMlaInputs();
        this.#addon.abortCapture();
        this.#graphs.delete(key);
        throw err;
      } finally {
        this.#mode = 'eager';
        this.#current = undefined;
      }
      rec.outPtr = out.ptr;
      rec.outShape = out.shape;
      rec.outDtype = out.cudaDtype;
      this.#addon.launchGraph(rec.id);
      return out;
    }
    this.#current = rec;
    this.#replayIndex = 0;
    this.#replayInputs = 0;
    this.#launchedEarly = false;
    this.#addon.beginReplay(rec.id);
    this.#mode = 'replay';
    let out: Tensor;
    try {
      out = fn();
      this.#releaseMlaInputs(); // launches nothing on replay, as at capture
      if (this.#replayIndex !== rec.allocs.length || !(out instanceof CudaTensor) || out.ptr !== rec.outPtr) {
        throw new Error('graph replay diverged from its capture: the function did different work');
      }
    } catch (err) {
      if (err === REPLAY_LAUNCHED) {
        this.#dropMlaInputs();
        return new CudaTensor(rec.outShape, rec.outDtype, rec.outPtr, undefined);
      }
      // NOTE: with FLASHSERVE_FULL_REPLAY=1 the graph is already running after the last host input
      // (#inputWritten); a divergence found later throws all the same, and the caller reruns the step
      // eagerly over the same inputs.
      this.#dropMlaInputs();
      this.#addon.cancelReplay();
      throw err;
    } finally {
      this.#mode = 'eager';
      this.#current = undefined;
    }
    if (!this.#launchedEarly) this.#addon.launchGraph(rec.id);
    return out;
  }

  /** Forgets a held mlaInputs without launching it (a capture or replay that failed). */
  #dropMlaInputs(): void {
    const held = this.#heldMlaInputs;
    this.#heldMlaInputs = undefined;
    for (const s of held?.keep ?? []) s?.drop();
  }

  /** Drops every captured graph (their pool memory stays cached for the next captures). */
  resetGraphs(): void {
    for (const rec of this.#graphs.values()) if (rec.id >= 0) this.#addon.destroyGraph(rec.id);
    this.#graphs.clear();
  }
}
