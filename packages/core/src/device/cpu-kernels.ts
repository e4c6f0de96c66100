// Tight float32 loops behind CpuDevice. Everything here works on flat typed arrays with explicit
// offsets so that callers can point at rows of a larger buffer without copying.
//
// Accumulation happens in JS numbers (float64) and is rounded once when stored into a Float32Array:
// at least as accurate as the fp32 accumulation of the GPU and of transformers' CPU reference.

/**
 * out[t, n] = sum_k x[t, k] * w[n, k] (+ bias[n]) for t < T, n < N: the HF Linear layout.
 * x rows start at xOff with stride K, w rows at wOff with stride K, out rows at outOff with stride N.
 *
 * NOTE: four rows of w are walked together so that each load of x[t, k] feeds four products, and
 * each row of w is streamed once per token. That keeps decode (T = 1), which is bound by reading the
 * weights, close to memory speed, and prefill no worse.
 */
export function matmulNt(
  x: Float32Array,
  xOff: number,
  T: number,
  K: number,
  w: Float32Array,
  wOff: number,
  N: number,
  out: Float32Array,
  outOff: number,
  bias?: Float32Array,
): void {
  const n4 = N - (N % 4);
  for (let t = 0; t < T; t++) {
    const xb = xOff + t * K;
    const ob = outOff + t * N;
    let n = 0;
    for (; n < n4; n += 4) {
      const w0 = wOff + n * K;
      const w1 = w0 + K;
      const w2 = w1 + K;
      const w3 = w2 + K;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let k = 0; k < K; k++) {
        const xv = x[xb + k]!;
        s0 += xv * w[w0 + k]!;
        s1 += xv * w[w1 + k]!;
        s2 += xv * w[w2 + k]!;
        s3 += xv * w[w3 + k]!;
      }
      if (bias !== undefined) {
        s0 += bias[n]!;
        s1 += bias[n + 1]!;
        s2 += bias[n + 2]!;
        s3 += bias[n + 3]!;
      }
      out[ob + n] = s0;
      out[ob + n + 1] = s1;
      out[ob + n + 2] = s2;
      out[ob + n + 3] = s3;
    }
    for (; n < N; n++) {
      const wb = wOff + n * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += x[xb + k]! * w[wb + k]!;
      out[ob + n] = bias === undefined ? s : s + bias[n]!;
    }
  }
}

/** out[t, n] = sum_k x[t, k] * w[k, n]: w stored [K, N] (not transposed). Rows of x at stride K. */
export function matmulNn(
  x: Float32Array,
  xOff: number,
  T: number,
  K: number,
  w: Float32Array,
  wOff: number,
  N: number,
  out: Float32Array,
  outOff: number,
): void {
  // Accumulates whole output rows so the inner loop walks w contiguously.
  const acc = new Float64Array(N);
  for (let t = 0; t < T; t++) {
    acc.fill(0);
    const xb = xOff + t * K;
    for (let k = 0; k < K; k++) {
      const xv = x[xb + k]!;
      if (xv === 0) continue;
      const wb = wOff + k * N;
      for (let n = 0; n < N; n++) acc[n]! += xv * w[wb + n]!;
    }
    const ob = outOff + t * N;
    for (let n = 0; n < N; n++) out[ob + n] = acc[n]!;
  }
}

/** Dot product of a[aOff : aOff + n] and b[bOff : bOff + n]. */
export function dot(a: Float32Array, aOff: number, b: Float32Array, bOff: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let i = 0;
  const n2 = n - (n % 2);
  for (; i < n2; i += 2) {
    s0 += a[aOff + i]! * b[bOff + i]!;
    s1 += a[aOff + i + 1]! * b[bOff + i + 1]!;
  }
  if (i < n) s0 += a[aOff + i]! * b[bOff + i]!;
  return s0 + s1;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** bf16 words -> float32: a bf16 is the top half of a float32. */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}

/** IEEE half words -> float32, including subnormals, infinities and NaN. */
export function f16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]!);
  return out;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 -> bf16 words, rounding to nearest even (used by tests and dummy weights). */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    f32Scratch[0] = src[i]!;
    const b = u32Scratch[0]!;
    if ((b & 0x7fffffff) > 0x7f800000) {
      out[i] = (b >>> 16) | 0x40; // keep NaN a NaN
      continue;
    }
    out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Device.mergeTokenIds on host arrays: out[i] = rows[i] >= 0 ? prev[rows[i]] : ids[i]. */
export function mergeTokenIdsInto(
  ids: Int32Array,
  prev: Int32Array,
  rows: Int32Array,
  out: Int32Array,
): Int32Array {
  if (rows.length !== ids.length || out.length !== ids.length) {
    throw new Error(`mergeTokenIds: ${ids.length} ids, ${rows.length} rows`);
  }
  for (let i = 0; i < ids.length; i++) {
    const r = rows[i]!;
    if (r >= prev.length) throw new Error(`mergeTokenIds: row ${r} of ${prev.length} previous ids`);
    out[i] = r >= 0 ? prev[r]! : ids[i]!;
  }
  return out;
}
