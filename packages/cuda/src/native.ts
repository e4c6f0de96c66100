// The addon's native surface, typed. Pointers are bigint device addresses; dtypes are the native
// enum (see csrc/kernels/elementwise.h). Only cuda-device.ts calls these; argument order matches the
// comments in csrc/binding/*.cc.

export const NATIVE_DTYPE = { f32: 0, bf16: 1, i32: 2, f16: 3 } as const;
export type NativeDType = (typeof NATIVE_DTYPE)[keyof typeof NATIVE_DTYPE];

export interface NativeInit {
  readonly name: string;
  readonly major: number;
  readonly minor: number;
  readonly multiProcessorCount: number;
  readonly totalMemory: number;
  readonly stream: bigint;
  readonly cublas: boolean;
}

export interface NativeMemStats {
  readonly inUse: number;
  readonly cached: number;
  readonly graphPool: number;
  readonly peakInUse: number;
  readonly cudaMallocs: number;
  readonly deviceFree: number;
  readonly deviceTotal: number;
}

type Ptr = bigint;
type Host = Float32Array | Int32Array | Uint16Array;

/** How a router picks experts (router.h): arguments of moeRoute and of moeRouteExperts(Small). scoring:
 * 0 softmax, 1 sigmoid; groupScore: 0 a group's max, 1 the sum of its top 2. */
export type RouterSettingsArgs = [
  nGroup: number,
  topkGroup: number,
  scoring: number,
  groupScore: number,
  normTopkProb: boolean,
  scaling: number,
];

/** The experts' weights, output and shapes: the last arguments of moeExperts, moeRouteExperts and their
 * small-path forms (moe_small.h). sharedGateUp / sharedDown 0n: no shared experts. */
export type MoeExpertArgs = [
  gateUp: Ptr,
  down: Ptr,
  sharedGateUp: Ptr,
  sharedDown: Ptr,
  out: Ptr,
  tokens: number,
  hidden: number,
  inter: number,
  sharedInter: number,
  experts: number,
  topK: number,
];

/** moeRouteExperts' and moeRouteExpertsSmall's arguments: the router's, then the experts'. */
export type RouteExpertsArgs = [
  logits: Ptr,
  bias: Ptr,
  logitsBf16: boolean,
  ...router: RouterSettingsArgs,
  x: Ptr,
  ...experts: MoeExpertArgs,
];

/** A weight the launch requests into L2 for a later kernel (skinny_gemm.h, l2_prefetch): 0n, 0 for none. */
export type L2PrefetchArgs = [prefetch: Ptr, prefetchBytes: number];

/** mlaInputs' arguments (mla_inputs.h), also the first ones of mlaInputsAbsorbQuery. */
export type MlaInputsArgs = [
  q: Ptr,
  kv: Ptr,
  positions: Ptr,
  cos: Ptr,
  sin: Ptr,
  kvNorm: Ptr,
  qOut: Ptr,
  cKv: Ptr,
  kPe: Ptr,
  tokens: number,
  heads: number,
  headDim: number,
  ropeDim: number,
  kvRank: number,
  maxPositions: number,
  eps: number,
  interleave: boolean,
];

export interface NativeCuda {
  init(device: number): NativeInit;
  alloc(bytes: number): Ptr;
  free(ptr: Ptr): void;
  /** While a graph is being captured: the upload's staging slot offset in graphArena(). */
  upload(
    dst: Ptr,
    data: Host,
    srcDtype: NativeDType,
    dstDtype: NativeDType,
    count: number,
  ): number | undefined;
  write(dst: Ptr, data: Host, srcDtype: NativeDType, dstDtype: NativeDType, count: number): void;
  uploadFromFile(
    dst: Ptr,
    path: string,
    byteOffset: number,
    srcDtype: NativeDType,
    dstDtype: NativeDType,
    count: number,
  ): void;
  download(src: Ptr, srcDtype: NativeDType, count: number, out: Float32Array | Int32Array): void;
  /** Queues a copy of `bytes` (at most 64 KiB) into a pinned slot behind the stream's work; returns its
   * ticket. A ticket stays valid until four later downloads (Runtime::download_async). Eager only. */
  downloadAsync(src: Ptr, bytes: number): number;
  /** Blocks until the ticket's copy is done and copies its bytes into `out` (raw bytes). */
  downloadWait(ticket: number, out: Int32Array): void;
  memsetZero(ptr: Ptr, bytes: number): void;
  copyDevice(dst: Ptr, src: Ptr, bytes: number): void;
  synchronize(): void;
  memStats(): NativeMemStats;
  emptyCache(): void;

  gatherRows(
    index: Ptr,
    input: Ptr,
    out: Ptr,
    rows: number,
    inRows: number,
    cols: number,
    elemBytes: number,
  ): void;
  copy2d(
    input: Ptr,
    out: Ptr,
    inDtype: NativeDType,
    outDtype: NativeDType,
    rows: number,
    cols: number,
    inStride: number,
    outStride: number,
  ): void;
  axpby(
    a: Ptr,
    b: Ptr,
    out: Ptr,
    aDtype: NativeDType,
    bDtype: NativeDType,
    outDtype: NativeDType,
    n: number,
    alpha: number,
    beta: number,
  ): void;
  rmsNorm(
    x: Ptr,
    residual: Ptr,
    w: Ptr,
    out: Ptr,
    residualOut: Ptr,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  rope(
    input: Ptr,
    out: Ptr,
    positions: Ptr,
    cos: Ptr,
    sin: Ptr,
    tokens: number,
    heads: number,
    headDim: number,
    ropeDim: number,
    maxPositions: number,
    interleave: boolean,
  ): void;
  siluMul(input: Ptr, out: Ptr, rows: number, inter: number): void;
  gemm(
    a: Ptr,
    b: Ptr,
    c: Ptr,
    cDtype: NativeDType,
    m: number,
    n: number,
    k: number,
    lda: number,
    ldb: number,
    ldc: number,
    transB: boolean,
    batch: number,
    strideA: number,
    strideB: number,
    strideC: number,
    bias: Ptr,
  ): void;
  bmmGrouped(x: Ptr, w: Ptr, out: Ptr, tokens: number, heads: number, k: number, n: number): void;
  /** out = rmsNorm(x (+ residual)) @ w^T (+ bias) in one launch; 1-2 rows (CudaDevice.addRmsNormLinear). */
  normLinear(
    x: Ptr,
    residual: Ptr,
    normWeight: Ptr,
    w: Ptr,
    bias: Ptr,
    out: Ptr,
    outDtype: NativeDType,
    residualOut: Ptr,
    normedOut: Ptr,
    m: number,
    n: number,
    k: number,
    eps: number,
  ): void;
  mlaAbsorbQuery(
    q: Ptr,
    wUkT: Ptr,
    out: Ptr,
    tokens: number,
    heads: number,
    nope: number,
    rope: number,
    latent: number,
    cKv: Ptr,
    kPe: Ptr,
    slots: Ptr,
    cache: Ptr,
    numSlots: number,
    ...prefetch: L2PrefetchArgs
  ): void;
  mlaInputs(...args: MlaInputsArgs): void;
  /** mlaInputs' arguments, then the absorbed query's: one launch at 1-2 tokens (mla_query.h). */
  mlaInputsAbsorbQuery(
    ...args: [
      ...mlaInputs: MlaInputsArgs,
      wUkT: Ptr,
      out: Ptr,
      slots: Ptr,
      cache: Ptr,
      numSlots: number,
      ...prefetch: L2PrefetchArgs,
    ]
  ): void;
  transpose(input: Ptr, out: Ptr, groups: number, rows: number, cols: number): void;
  fillRandom(
    out: Ptr,
    dtype: NativeDType,
    n: number,
    seedLo: number,
    seedHi: number,
    lo: number,
    hi: number,
  ): void;
  kvCacheWrite(
    cKv: Ptr,
    kPe: Ptr,
    slots: Ptr,
    cache: Ptr,
    tokens: number,
    kvRank: number,
    ropeDim: number,
    cKvStride: number,
    kPeStride: number,
    numSlots: number,
  ): void;
  /** out[i] = rows[i] >= 0 ? prev[rows[i]] : ids[i] for i < n, all i32 (a row >= prevCount takes ids[i]). */
  mergeTokenIds(out: Ptr, ids: Ptr, prev: Ptr, rows: Ptr, n: number, prevCount: number): void;
  moeRoute(
    ...args: [
      logits: Ptr,
      bias: Ptr,
      ids: Ptr,
      weights: Ptr,
      tokens: number,
      experts: number,
      topK: number,
      ...router: RouterSettingsArgs,
      logitsBf16: boolean,
    ]
  ): void;
  /** Routed + shared experts as grouped work (ops_moe.cc), any count of tokens; with cuBLAS the shared
   * experts run beside the routed ones on the aux stream. */
  moeExperts(...args: [x: Ptr, ids: Ptr, weights: Ptr, ...experts: MoeExpertArgs]): void;
  /** moeRoute, then moeExperts with that routing, in one call (the shared experts also run beside the
   * router). */
  moeRouteExperts(...args: RouteExpertsArgs): void;
  moeRouteExpertsSmall(...args: RouteExpertsArgs): void;
  moeExpertsSmall(...args: [x: Ptr, ids: Ptr, weights: Ptr, ...experts: MoeExpertArgs]): void;
  sample(
    logits: Ptr,
    logitsBf16: boolean,
    rows: number,
    vocab: number,
    temperature: Ptr,
    topK: Ptr,
    topP: Ptr,
    minP: Ptr,
    uniform: Ptr,
    outTokens: Ptr,
    outLogprobs: Ptr,
    numTop: number,
    topIds: Ptr,
    topLogprobs: Ptr,
  ): void;

  beginCapture(): void;
  endCapture(): number;
  abortCapture(): void;
  beginReplay(graph: number): void;
  cancelReplay(): void;
  /** `hostWritten`: staging slots the replay pass filled through graphArena() (all, or 0). */
  launchGraph(graph: number, hostWritten?: number): void;
  /** The pinned staging memory of every graph's uploads (never moved or freed). */
  graphArena(): ArrayBuffer;
  destroyGraph(graph: number): void;

  /** Measurement only (csrc/kernels/timeline.h): a device log of up to `capacity` kernel stamps. */
  timelineStart(capacity: number): KernelTimelineLog;
  timelineTake(): KernelTimeline;
  timelineStop(): void;
}

/** The device log of a kernel timeline, for another addon's kernels to stamp into (with a tag). */
export interface KernelTimelineLog {
  readonly stamps: bigint;
  readonly count: bigint;
}

/** The stamps of the kernels that ran since the last take, and the launches noted since the start. */
export interface KernelTimeline {
  /** Each stamp: ns after the first one, when the kernel's dependencies were met. */
  readonly times: Float64Array;
  readonly grids: Uint32Array;
  readonly blocks: Uint32Array;
  /** 0 for our kernels (named by `ops`), else the other addon's kernel (csrc/kernels/timeline.h). */
  readonly tags: Uint32Array;
  /** Stamps past the log's capacity. */
  readonly dropped: number;
  /** The launches noted on the host since timelineStart, in order: op names and grid sizes. */
  readonly ops: string[];
  readonly opGrids: Uint32Array;
}
