// The Device contract: every numeric operation a model needs, so that model code is written once and
// runs on the CPU (float32, exact reference) or on a GPU (bf16 storage, fp32 accumulation).
//
// Invariants:
// - Tensors are opaque handles owned by the device that made them; shapes are row-major and
//   contiguous. Shapes below use T = tokens in the step, H = hidden size, h = heads, V = vocab,
//   E = routed experts, k = experts per token, I = intermediate size.
// - Operations are enqueued in order; only `toHost` waits for the result. A CUDA device may run them
//   asynchronously on one stream (and capture them into graphs), so model code never reads tensor
//   contents except through `toHost`.
// - Every operation returns a new tensor (or a view, where the doc says so) and never modifies its
//   inputs, except `write`. `release` gives a tensor's memory back early (the CPU device leaves it to
//   the garbage collector).
// - Floating-point ops accumulate in fp32 whatever the storage type; outputs are stored in
//   `info.computeDType`. Index tensors (token ids, positions, expert ids) are i32.
// - Ops are deliberately coarse (fused norm+residual, gate/up+SiLU, whole-MoE routing and experts) so
//   one op is one kernel launch on a GPU.
//
// NOTE: this file is the one place the op set is defined. A device that cannot do an op throws an
// error naming the op; it never silently falls back.

export type DType = 'f32' | 'bf16' | 'f16' | 'i32';
export type DeviceKind = 'cpu' | 'cuda';

export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** Host data accepted by `upload`. bf16/f16 come as raw 16-bit words. */
export type HostData = Float32Array | Int32Array | Uint16Array;

export interface DeviceInfo {
  readonly kind: DeviceKind;
  /** Human-readable, e.g. "cpu (float32)" or "NVIDIA H100 80GB HBM3 (sm_90)". */
  readonly name: string;
  /** CUDA compute capability as major*10+minor (90 for Hopper); undefined on the CPU. */
  readonly computeCapability?: number;
  /** Element type activations and weights are stored in. */
  readonly computeDType: DType;
}

/** Precomputed rotary tables, built once per model on the host and uploaded.
 * `cos`/`sin` are [maxPositions, rotaryDim / 2] and already include YaRN's attention factor
 * (mscale), exactly as transformers multiplies it into its cos/sin. */
export interface RopeTable {
  readonly cos: Tensor;
  readonly sin: Tensor;
  /** Number of rotated dims (qk_rope_head_dim), even. */
  readonly rotaryDim: number;
  readonly maxPositions: number;
}

/** How `rope` pairs the rotated dims of a head (pair i uses frequency i, i < rotaryDim / 2).
 * - 'half': dim i pairs with dim i + rotaryDim/2 (rotate_half: transformers' DeepSeek-V3 with
 *   `rope_interleave` false).
 * - 'interleave': dims 2i and 2i+1 form pair i and the results stay in place (the complex-number form
 *   of transformers' DeepSeek-V2 and the original DeepSeek code). transformers' DeepSeek-V3 with
 *   `rope_interleave` true computes the same numbers but writes them de-interleaved; q and k are
 *   permuted alike, so every q.k product (all attention ever uses) is the same. */
export type RopeStyle = 'half' | 'interleave';

/** Router parameters of one MoE layer (from the model config). */
export interface MoeRouteParams {
  /** 'v2-softmax': softmax scores, top-k greedy or group-limited (group score = max in group).
   *  'v3-sigmoid': sigmoid scores; selection uses scores + correctionBias, group score = sum of the
   *  top-2 biased scores in the group; weights are the unbiased scores.
   *  In both, experts outside the kept groups are never chosen (transformers 5.17 masks them with
   *  -inf for V3 and with 0 for V2, where softmax scores are positive, so the two agree). */
  readonly kind: 'v2-softmax' | 'v3-sigmoid';
  /** Experts per token (num_experts_per_tok). */
  readonly topK: number;
  /** Expert groups (n_group); 1 means no grouping. */
  readonly nGroup: number;
  /** Groups kept per token (topk_group). */
  readonly topkGroup: number;
  /** Renormalise the k weights to sum to 1 (with +1e-20 in the denominator). */
  readonly normTopkProb: boolean;
  /** Multiplies the final weights (routed_scaling_factor). */
  readonly routedScalingFactor: number;
  /** [E] e_score_correction_bias (V3 only). */
  readonly correctionBias?: Tensor;
}

export interface MoeRouting {
  /** [T, k] i32 expert ids. */
  readonly ids: Tensor;
  /** [T, k] f32 weights (already scaled by routedScalingFactor). */
  readonly weights: Tensor;
}

/** A gated (SwiGLU) MLP: down(silu(gate x) * up x). */
export interface GatedMlpWeights {
  /** [2I, H]: rows [0, I) are gate_proj, rows [I, 2I) are up_proj. */
  readonly gateUp: Tensor;
  /** [H, I]: down_proj. */
  readonly down: Tensor;
}

/** The experts of one MoE layer: the routed ones stacked, and the shared ones if the layer has any. */
export interface MoeExpertWeights {
  /** [E, 2I, H]: rows [0, I) are gate_proj, rows [I, 2I) are up_proj (HF Linear layout). */
  readonly gateUp: Tensor;
  /** [E, H, I]: down_proj. */
  readonly down: Tensor;
  /** The shared experts as one MLP (intermediate size nShared * I), run on every token. */
  readonly shared?: GatedMlpWeights;
}

/** MLA's per-layer attention inputs (see `Device.mlaInputs`). */
export interface MlaInputs {
  /** [T, h, D], RoPE applied to the last rotaryDim dims of each head. */
  readonly q: Tensor;
  /** [T, L], RMS-normalised latent. */
  readonly cKv: Tensor;
  /** [T, R], RoPE applied (R = rotaryDim). */
  readonly kPe: Tensor;
}

/** What `Device.addRmsNormLinear` returns. */
export interface NormLinearResult {
  /** [T, N] the Linear's output. */
  readonly out: Tensor;
  /** [T, H] x + residual; present exactly when a residual was passed. */
  readonly residual?: Tensor;
  /** [T, H] the normed rows; present exactly when keepNormed was set. */
  readonly normed?: Tensor;
}

export interface Device {
  readonly info: DeviceInfo;

  // --- memory ---------------------------------------------------------------------------------
  /** Copies host data to a new tensor of `shape`; `dtype` says how `data` is encoded. Converts to the
   * device's storage type for floating-point data (f32/bf16/f16 -> computeDType). */
  upload(data: HostData, shape: readonly number[], dtype: DType): Tensor;
  /** Overwrites `dst` with host data of the same element count (encoded as `dtype`). Ordered with the
   * other ops, so persistent per-step input buffers (ids, positions) can be refilled before a
   * captured graph is replayed. */
  write(dst: Tensor, data: HostData, dtype: DType): void;
  /** New tensor of zeros ([numBlocks, blockSize, 1, 576] for a KV cache, for instance). */
  zeros(shape: readonly number[], dtype: DType): Tensor;
  /** Waits for pending work and returns the contents: Int32Array for i32, Float32Array otherwise. */
  toHost(t: Tensor): Float32Array | Int32Array;
  /** Gives the tensor's memory back; using it afterwards is an error. */
  release(t: Tensor): void;

  // --- layout -----------------------------------------------------------------------------------
  /** Same elements, new shape (equal element count): a view sharing storage, no copy. Release the
   * source tensor (never the view) once neither is used any more. */
  reshape(x: Tensor, shape: readonly number[]): Tensor;
  /** x[..., start : start + size] along the last dim: [..., D] -> [..., size]. A new tensor (a copy, or
   * a view where the slice is contiguous in memory, which keeps x's memory alive), so `x` may be
   * released right after either way. */
  sliceLast(x: Tensor, start: number, size: number): Tensor;
  /** Concatenates along the last dim; leading dims must match: [..., D0], [..., D1] -> [..., D0+D1]. */
  concatLast(parts: readonly Tensor[]): Tensor;

  // --- dense math -------------------------------------------------------------------------------
  /** Gathers rows: table [V, H], ids i32 [T] -> [T, H]. Token embedding, and picking the rows whose
   * logits are wanted. */
  embedding(table: Tensor, ids: Tensor): Tensor;
  /** OPTIONAL (async scheduling): token ids of a step whose inputs include tokens the previous step
   * sampled on the device. ids i32 [T], prev i32 [M], rows i32 [T] -> i32 [T] where
   * out[i] = rows[i] >= 0 ? prev[rows[i]] : ids[i]. A device that has it lets the engine launch a
   * decode step before the previous step's tokens are back on the host. */
  mergeTokenIds?(ids: Tensor, prev: Tensor, rows: Tensor): Tensor;
  /** x [T, K], w [N, K] (HF Linear layout), bias [N]? -> x @ w^T + bias: [T, N]. */
  linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor;
  /** Per-head matmul for absorbed MLA. x [T, h, a].
   *  transposeW true:  w [h, b, a] -> out[t, i, :] = w[i] @ x[t, i, :]    ([T, h, b]);
   *  transposeW false: w [h, a, b] -> out[t, i, :] = x[t, i, :] @ w[i]    ([T, h, b]). */
  bmm(x: Tensor, w: Tensor, transposeW: boolean): Tensor;
  /** RMSNorm over the last dim: x [T, D], w [D] -> x * rsqrt(mean(x^2) + eps) * w, in fp32. */
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor;
  /** Fused residual add + RMSNorm: residual' = x + residual; out = rmsNorm(residual', w, eps).
   * x, residual [T, H]. Returns both, so the next layer can continue the residual stream. */
  addRmsNorm(
    x: Tensor,
    residual: Tensor,
    w: Tensor,
    eps: number,
  ): { readonly out: Tensor; readonly residual: Tensor };
  /** OPTIONAL: the norm and the Linear that reads it, as one op (a GPU runs it as one launch at decode
   * sizes; the norm before a Linear is on a decode step's critical path three times a layer). Exactly
   * `addRmsNorm(x, residual, normWeight, eps)` (or `rmsNorm(x, normWeight, eps)` when `residual` is
   * undefined) followed by `linear(normed, w, bias)`:
   *  - out [T, N]: the Linear's output;
   *  - residual [T, H]: x + residual, only when `residual` was given;
   *  - normed [T, H]: the normed rows, only when `keepNormed` (for a second consumer, e.g. the experts
   *    after the router gate).
   * Devices without it leave it out; models then call the two ops (see `addRmsNormLinear` in models). */
  addRmsNormLinear?(
    x: Tensor,
    residual: Tensor | undefined,
    normWeight: Tensor,
    eps: number,
    w: Tensor,
    bias?: Tensor,
    keepNormed?: boolean,
  ): NormLinearResult;
  /** Elementwise a + b, same shape. */
  add(a: Tensor, b: Tensor): Tensor;
  /** Elementwise x * s. */
  scale(x: Tensor, s: number): Tensor;
  /** x [T, 2I] (gate ; up) -> silu(gate) * up: [T, I]. */
  siluAndMul(x: Tensor): Tensor;
  /** Rotary embedding on the LAST table.rotaryDim dims of each head; the leading dims of each head
   * pass through unchanged. x [T, h, D] with D >= rotaryDim, positions i32 [T] -> [T, h, D]. */
  rope(x: Tensor, positions: Tensor, table: RopeTable, style: RopeStyle): Tensor;
  /** MLA's attention inputs from the layer's projections, in one op (a decode step's hot path):
   *  q [T, h, D] -> rope(q); kv [T, L + R] (R = table.rotaryDim) -> cKv = rmsNorm(kv[:, :L], kvNorm, eps)
   *  and kPe = rope(kv[:, L:]) (as a single head). Equal to rope + sliceLast + rmsNorm + sliceLast + rope. */
  mlaInputs(
    q: Tensor,
    kv: Tensor,
    positions: Tensor,
    table: RopeTable,
    style: RopeStyle,
    kvNorm: Tensor,
    eps: number,
  ): MlaInputs;

  // --- mixture of experts -----------------------------------------------------------------------
  /** Routes tokens: routerLogits [T, E] (fp32 gate output) -> top-k ids and weights per token. */
  moeRoute(routerLogits: Tensor, params: MoeRouteParams): MoeRouting;
  /** Runs the experts: x [T, H] -> sum_j weights[t, j] * down(silu(gate x) * up x) over the token's k
   * routed experts, plus the shared experts' MLP of x when `experts.shared` is set: [T, H]. */
  moeExperts(x: Tensor, routing: MoeRouting, experts: MoeExpertWeights): Tensor;
  /** OPTIONAL: exactly moeExperts(x, moeRoute(routerLogits, params), experts), the routing not
   * returned (and released), in one op so a device can fold the router into the expert kernels.
   * Devices without it (the CPU) leave it out and callers run the two ops. */
  moeRouteExperts?(
    x: Tensor,
    routerLogits: Tensor,
    params: MoeRouteParams,
    experts: MoeExpertWeights,
  ): Tensor;
  /** OPTIONAL: a hint that the weight `t` is read later in this forward pass, so a device with a cache
   * between its memory and its cores may start fetching it while the ops before leave memory bandwidth
   * idle (a GPU during a decode step's attention). No effect on any result. */
  prefetch?(t: Tensor): void;

  // --- graphs (optional) ------------------------------------------------------------------------
  /** OPTIONAL: runs `fn` (one forward pass whose ops and shapes are the same on every call with this
   * `key`) through a captured graph: a device may run it eagerly, capture it, or replay the capture,
   * and returns what `fn` returned (valid until the next call of `graph` or the next step). The
   * engine calls it only for decode-only steps padded to a size of its decode-graph ladder
   * (EngineOptions.decodeGraphBatchSizes), one key per size; devices without graphs (the CPU) leave
   * it out and every step runs eagerly. After `fn`'s last upload or write, a replay may cut the rest
   * of `fn` short (its device work is the captured graph's) by throwing a value that is not an Error
   * through it, so `fn` must do nothing but device ops from there on, and code inside `fn` that
   * catches must rethrow such values untouched. */
  graph?(key: string, fn: () => Tensor): Tensor;
}
