// Dense ops: gathers, copies, elementwise, RMSNorm, RoPE, SiLU-and-mul, GEMMs, random fill, KV-cache
// writes, token-id merges, and MLA's fused input and absorbed-query ops. Each function decodes
// positional arguments (pointers as BigInt) into a params struct and calls the op's launcher on the
// runtime's stream. Shapes are checked in TypeScript, where the tensors' shapes live; the launchers
// check what the kernels themselves rely on.
#include "binding/napi_util.h"
#include "kernels/activation.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/mla_inputs.h"
#include "kernels/mla_query.h"
#include "kernels/moe.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/skinny_gemm.h"
#include "runtime/env.h"

namespace flashserve {
namespace {

using Info = const Napi::CallbackInfo&;

// gatherRows(index, in, out, rows, inRows, cols, elemBytes)
Napi::Value gather_rows(Info info) {
  return guarded(info, "embedding", [&] {
    GatherRowsParams p{};
    p.index = static_cast<const int32_t*>(ptr_arg(info, 0));
    p.index_div = 1;
    p.in = ptr_arg(info, 1);
    p.out = ptr_arg(info, 2);
    p.rows = int_arg(info, 3);
    p.in_rows = int_arg(info, 4);
    p.cols = int_arg(info, 5);
    p.elem_bytes = int_arg(info, 6);
    p.stream = stream_or_throw();
    run_gather_rows(p);
    return info.Env().Undefined();
  });
}

// copy2d(in, out, inDtype, outDtype, rows, cols, inStride, outStride)
Napi::Value copy2d(Info info) {
  return guarded(info, "copy2d", [&] {
    Copy2dParams p{};
    p.in = ptr_arg(info, 0);
    p.out = ptr_arg(info, 1);
    p.in_dtype = dtype_arg(info, 2);
    p.out_dtype = dtype_arg(info, 3);
    p.rows = int_arg(info, 4);
    p.cols = int_arg(info, 5);
    p.in_stride = i64_arg(info, 6);
    p.out_stride = i64_arg(info, 7);
    p.stream = stream_or_throw();
    run_copy2d(p);
    return info.Env().Undefined();
  });
}

// axpby(a, b | 0n, out, aDtype, bDtype, outDtype, n, alpha, beta)
Napi::Value axpby(Info info) {
  return guarded(info, "add", [&] {
    AxpbyParams p{};
    p.a = ptr_arg(info, 0);
    p.b = ptr_arg(info, 1);
    p.out = ptr_arg(info, 2);
    p.a_dtype = dtype_arg(info, 3);
    p.b_dtype = dtype_arg(info, 4);
    p.out_dtype = dtype_arg(info, 5);
    p.n = i64_arg(info, 6);
    p.alpha = static_cast<float>(num_arg(info, 7));
    p.beta = static_cast<float>(num_arg(info, 8));
    p.stream = stream_or_throw();
    run_axpby(p);
    return info.Env().Undefined();
  });
}

// rmsNorm(x, residual | 0n, weight, out, residualOut | 0n, rows, cols, eps)
Napi::Value rms_norm(Info info) {
  return guarded(info, "rmsNorm", [&] {
    RmsNormParams p{};
    p.x = ptr_arg(info, 0);
    p.residual = ptr_arg(info, 1);
    p.weight = ptr_arg(info, 2);
    p.out = ptr_arg(info, 3);
    p.residual_out = ptr_arg(info, 4);
    p.rows = int_arg(info, 5);
    p.cols = int_arg(info, 6);
    p.x_stride = p.residual_stride = p.out_stride = p.cols;
    p.eps = static_cast<float>(num_arg(info, 7));
    p.stream = stream_or_throw();
    run_rms_norm(p);
    return info.Env().Undefined();
  });
}

// rope(in, out, positions, cos, sin, tokens, heads, headDim, ropeDim, maxPositions, interleave)
Napi::Value rope(Info info) {
  return guarded(info, "rope", [&] {
    RopeParams p{};
    p.in = ptr_arg(info, 0);
    p.out = ptr_arg(info, 1);
    p.positions = static_cast<const int32_t*>(ptr_arg(info, 2));
    p.cos = ptr_arg(info, 3);
    p.sin = ptr_arg(info, 4);
    p.num_tokens = int_arg(info, 5);
    p.num_heads = int_arg(info, 6);
    p.head_dim = int_arg(info, 7);
    p.rope_dim = int_arg(info, 8);
    p.max_positions = int_arg(info, 9);
    p.interleave = info[10].ToBoolean().Value();
    p.stream = stream_or_throw();
    run_rope(p);
    return info.Env().Undefined();
  });
}

// siluMul(in, out, rows, inter)
Napi::Value silu_mul(Info info) {
  return guarded(info, "siluAndMul", [&] {
    SiluMulParams p{};
    p.in = ptr_arg(info, 0);
    p.out = ptr_arg(info, 1);
    p.rows = int_arg(info, 2);
    p.inter = int_arg(info, 3);
    p.stream = stream_or_throw();
    run_silu_mul(p);
    return info.Env().Undefined();
  });
}

// Linears of one or two rows use the skinny kernel (H100, V2-Lite shapes, m=1: 4-5 us against
// cuBLASLt's 7-9 us; at m=8 cuBLASLt wins) unless FLASHSERVE_NO_SKINNY_GEMM=1 (A/B timing); the rest
// goes to cuBLASLt. NOTE: the grouped GEMM's decode tiles (16 x 32, weights requested before the PDL wait)
// for Linears of 3-64 rows and at most 8192 columns made the batch-32 step 12.49 -> 13.71 ms (tenth
// session, H100, three interleaved rounds), batch 8 8.31 -> 9.34.
constexpr int SKINNY_MAX_ROWS = 2;
bool skinny_enabled() {
  static const bool on = !env_flag("FLASHSERVE_NO_SKINNY_GEMM");
  return on;
}

// gemm(a, b, c, cDtype, m, n, k, lda, ldb, ldc, transB, batch, strideA, strideB, strideC, bias | 0n)
Napi::Value gemm(Info info) {
  return guarded(info, "linear", [&] {
    cudaStream_t stream = stream_or_throw();
    void* bias = ptr_arg(info, 15);
    const bool trans_b = info[10].ToBoolean().Value();
    const int batch = int_arg(info, 11);
    SkinnyGemmParams sp{};
    sp.a = ptr_arg(info, 0);
    sp.w = ptr_arg(info, 1);
    sp.bias = bias;
    sp.c = ptr_arg(info, 2);
    sp.c_dtype = dtype_arg(info, 3);
    sp.m = int_arg(info, 4);
    sp.n = int_arg(info, 5);
    sp.k = int_arg(info, 6);
    sp.lda = i64_arg(info, 7);
    sp.ldc = i64_arg(info, 9);
    sp.sms = runtime().props().sms;
    sp.stream = stream;
    const bool w_contiguous = i64_arg(info, 8) == sp.k;
    if (batch == 1 && trans_b && w_contiguous && sp.m <= SKINNY_MAX_ROWS && skinny_enabled() && skinny_gemm_applies(sp)) {
      run_skinny_gemm(sp);
      return info.Env().Undefined();
    }
#ifdef FLASHSERVE_WITH_CUBLAS
    GemmParams p{};
    p.a = sp.a;
    p.b = sp.w;
    p.c = sp.c;
    p.c_dtype = sp.c_dtype;
    p.m = sp.m;
    p.n = sp.n;
    p.k = sp.k;
    p.lda = sp.lda;
    p.ldb = i64_arg(info, 8);
    p.ldc = sp.ldc;
    p.trans_b = trans_b;
    p.batch = batch;
    p.stride_a = i64_arg(info, 12);
    p.stride_b = i64_arg(info, 13);
    p.stride_c = i64_arg(info, 14);
    p.stream = stream;
    run_gemm(p);
    if (bias) {
      require(p.batch == 1 && p.c_dtype == DType::BF16 && p.ldc == p.n, "linear: bias needs a plain bf16 GEMM");
      AddBiasParams b{p.c, bias, p.m, p.n, p.stream};
      run_add_bias(b);
    }
    return info.Env().Undefined();
#else
    throw std::runtime_error(
        "this addon was built without cuBLAS (no cublasLt.h at build time), which GEMMs with more than 16 rows "
        "need; rebuild on a machine with the CUDA toolkit's cuBLAS");
    return info.Env().Undefined();
#endif
  });
}

// normLinear(x, residual | 0n, normWeight, w, bias | 0n, out, outDtype, residualOut | 0n, normedOut | 0n, m, n,
//            k, eps): out = [RMSNorm(x + residual) or RMSNorm(x)] @ w^T (+ bias) in one launch, the skinny
// kernel's norm form (1-2 rows; TypeScript decides when it applies and runs rmsNorm + gemm otherwise).
Napi::Value norm_linear(Info info) {
  return guarded(info, "addRmsNormLinear", [&] {
    SkinnyGemmParams sp{};
    sp.norm.x = ptr_arg(info, 0);
    sp.norm.residual = ptr_arg(info, 1);
    sp.norm.weight = ptr_arg(info, 2);
    sp.w = ptr_arg(info, 3);
    sp.bias = ptr_arg(info, 4);
    sp.c = ptr_arg(info, 5);
    sp.c_dtype = dtype_arg(info, 6);
    sp.norm.residual_out = ptr_arg(info, 7);
    sp.norm.normed_out = ptr_arg(info, 8);
    sp.m = int_arg(info, 9);
    sp.n = int_arg(info, 10);
    sp.k = int_arg(info, 11);
    sp.norm.eps = static_cast<float>(num_arg(info, 12));
    sp.lda = sp.k;
    sp.ldc = sp.n;
    sp.sms = runtime().props().sms;
    sp.stream = stream_or_throw();
    run_skinny_gemm(sp);
    return info.Env().Undefined();
  });
}

// bmmGrouped(x, w, out, tokens, heads, k, n): out[t, h, :] = x[t, h, :] @ w[h]^T with w [heads, n, k]
// bf16, x [tokens, heads, k], out [tokens, heads, n]: the absorbed-MLA per-head projections at decode
// sizes, as one launch (heads are the groups): the skinny kernel for a token or two, like Linears,
// else the grouped GEMM.
Napi::Value bmm_grouped(Info info) {
  return guarded(info, "bmm", [&] {
    GroupedGemmParams p{};
    p.a = ptr_arg(info, 0);
    p.w = ptr_arg(info, 1);
    p.c = ptr_arg(info, 2);
    const int tokens = int_arg(info, 3), heads = int_arg(info, 4), k = int_arg(info, 5), n = int_arg(info, 6);
    SkinnyGemmParams sp{};
    sp.a = p.a;
    sp.w = p.w;
    sp.c = p.c;
    sp.c_dtype = DType::BF16;
    sp.m = tokens;
    sp.n = heads * n;
    sp.k = k;
    sp.lda = static_cast<int64_t>(heads) * k;
    sp.ldc = static_cast<int64_t>(heads) * n;
    sp.group_rows = n;
    sp.a_group_stride = k;
    sp.c_group_stride = n;
    sp.sms = runtime().props().sms;
    sp.stream = stream_or_throw();
    if (tokens <= SKINNY_MAX_ROWS && skinny_enabled() && skinny_gemm_applies(sp)) {
      run_skinny_gemm(sp);
      return info.Env().Undefined();
    }
    p.m = tokens;
    p.k = k;
    p.n = n;
    p.lda = static_cast<int64_t>(heads) * k;
    p.ldc = static_cast<int64_t>(heads) * n;
    p.a_group_stride = k;
    p.c_group_stride = n;
    p.w_group_stride = static_cast<int64_t>(n) * k;
    p.dense_groups = heads;
    p.block_m = dense_groups_block_m(tokens);
    p.block_n = 64;
    p.max_tiles = heads * ((tokens + p.block_m - 1) / p.block_m);
    // bmm's w is a weight, as for the skinny kernel above (which reads it before its wait too).
    p.weights_ready = true;
    p.stream = stream_or_throw();
    run_grouped_gemm(p);
    return info.Env().Undefined();
  });
}

// mlaAbsorbQuery(q, wUkT, out, tokens, heads, nope, rope, latent, cKv | 0n, kPe | 0n, slots | 0n,
//                cache | 0n, numSlots, prefetch | 0n, prefetchBytes): out [tokens, heads, latent + rope] =
// [q_nope @ W_UK ; q_pe] per head, W_UK given transposed as [heads, latent, nope] (tokens <= 64); with a
// cache, also the step's rows [cKv ; kPe] at their slots; with prefetch, those bytes requested into L2
// (the skinny launch at 1-2 tokens; mla_query.h).
Napi::Value mla_absorb_query(Info info) {
  return guarded(info, "mlaAbsorbQuery", [&] {
    MlaQueryParams p{};
    p.q = ptr_arg(info, 0);
    p.w_uk_t = ptr_arg(info, 1);
    p.out = ptr_arg(info, 2);
    p.tokens = int_arg(info, 3);
    p.heads = int_arg(info, 4);
    p.nope = int_arg(info, 5);
    p.rope = int_arg(info, 6);
    p.latent = int_arg(info, 7);
    p.c_kv = ptr_arg(info, 8);
    p.k_pe = ptr_arg(info, 9);
    p.slots = static_cast<const int32_t*>(ptr_arg(info, 10));
    p.cache = ptr_arg(info, 11);
    p.num_slots = i64_arg(info, 12);
    p.l2_prefetch = ptr_arg(info, 13);
    p.l2_prefetch_bytes = i64_arg(info, 14);
    p.sms = runtime().props().sms;
    p.stream = stream_or_throw();
    run_mla_query(p);
    return info.Env().Undefined();
  });
}

// mlaInputs' arguments 0..16 (see mla_inputs below).
MlaInputsParams mla_inputs_args(Info info) {
  MlaInputsParams p{};
  p.q = ptr_arg(info, 0);
  p.kv = ptr_arg(info, 1);
  p.positions = static_cast<const int32_t*>(ptr_arg(info, 2));
  p.cos = ptr_arg(info, 3);
  p.sin = ptr_arg(info, 4);
  p.kv_norm = ptr_arg(info, 5);
  p.q_out = ptr_arg(info, 6);
  p.c_kv = ptr_arg(info, 7);
  p.k_pe = ptr_arg(info, 8);
  p.num_tokens = int_arg(info, 9);
  p.num_heads = int_arg(info, 10);
  p.head_dim = int_arg(info, 11);
  p.rope_dim = int_arg(info, 12);
  p.kv_rank = int_arg(info, 13);
  p.max_positions = int_arg(info, 14);
  p.eps = static_cast<float>(num_arg(info, 15));
  p.interleave = info[16].ToBoolean().Value();
  p.stream = stream_or_throw();
  return p;
}

// mlaInputsAbsorbQuery(<mlaInputs' 17 arguments>, wUkT, out, slots | 0n, cache | 0n, numSlots, prefetch | 0n,
//                      prefetchBytes): mlaInputs
// folded into mlaAbsorbQuery (mla_query.h): every output of both, one launch at 1-2 tokens.
Napi::Value mla_inputs_absorb_query(Info info) {
  return guarded(info, "mlaInputsAbsorbQuery", [&] {
    const MlaInputsParams in = mla_inputs_args(info);
    MlaQueryParams p{};
    p.q = in.q_out;
    p.w_uk_t = ptr_arg(info, 17);
    p.out = ptr_arg(info, 18);
    p.tokens = in.num_tokens;
    p.heads = in.num_heads;
    p.nope = in.head_dim - in.rope_dim;
    p.rope = in.rope_dim;
    p.latent = in.kv_rank;
    p.c_kv = in.c_kv;
    p.k_pe = in.k_pe;
    p.slots = static_cast<const int32_t*>(ptr_arg(info, 19));
    p.cache = ptr_arg(info, 20);
    p.num_slots = i64_arg(info, 21);
    p.l2_prefetch = ptr_arg(info, 22);
    p.l2_prefetch_bytes = i64_arg(info, 23);
    p.sms = runtime().props().sms;
    p.stream = in.stream;
    p.inputs = &in;
    run_mla_query(p);
    return info.Env().Undefined();
  });
}

// mlaInputs(q, kv, positions, cos, sin, kvNorm, qOut, cKv, kPe, tokens, heads, headDim, ropeDim, kvRank,
//           maxPositions, eps, interleave)
Napi::Value mla_inputs(Info info) {
  return guarded(info, "mlaInputs", [&] {
    MlaInputsParams p = mla_inputs_args(info);
    run_mla_inputs(p);
    return info.Env().Undefined();
  });
}

// transpose(in, out, groups, rows, cols): bf16 [groups, rows, cols] -> [groups, cols, rows]
Napi::Value transpose(Info info) {
  return guarded(info, "transpose", [&] {
    TransposeParams p{};
    p.in = ptr_arg(info, 0);
    p.out = ptr_arg(info, 1);
    p.groups = int_arg(info, 2);
    p.rows = int_arg(info, 3);
    p.cols = int_arg(info, 4);
    p.stream = stream_or_throw();
    run_transpose(p);
    return info.Env().Undefined();
  });
}

// fillRandom(out, dtype, n, seedLo32, seedHi32, lo, hi)
Napi::Value fill_random(Info info) {
  return guarded(info, "fillRandom", [&] {
    FillRandomParams p{};
    p.out = ptr_arg(info, 0);
    p.dtype = dtype_arg(info, 1);
    p.n = i64_arg(info, 2);
    p.seed = (static_cast<uint64_t>(static_cast<uint32_t>(i64_arg(info, 4))) << 32) |
             static_cast<uint32_t>(i64_arg(info, 3));
    p.lo = static_cast<float>(num_arg(info, 5));
    p.hi = static_cast<float>(num_arg(info, 6));
    p.stream = stream_or_throw();
    run_fill_random(p);
    return info.Env().Undefined();
  });
}

// kvCacheWrite(cKv, kPe, slots, cache, tokens, kvRank, ropeDim, cKvStride, kPeStride, numSlots)
Napi::Value kv_cache_write(Info info) {
  return guarded(info, "kvCacheWrite", [&] {
    KvCacheWriteParams p{};
    p.c_kv = ptr_arg(info, 0);
    p.k_pe = ptr_arg(info, 1);
    p.slots = static_cast<const int32_t*>(ptr_arg(info, 2));
    p.cache = ptr_arg(info, 3);
    p.num_tokens = int_arg(info, 4);
    p.kv_rank = int_arg(info, 5);
    p.rope_dim = int_arg(info, 6);
    p.c_kv_stride = i64_arg(info, 7);
    p.k_pe_stride = i64_arg(info, 8);
    p.num_slots = i64_arg(info, 9);
    p.stream = stream_or_throw();
    run_kv_cache_write(p);
    return info.Env().Undefined();
  });
}

// mergeTokenIds(out, ids, prev, rows, n, prevCount): out[i] = rows[i] >= 0 ? prev[rows[i]] : ids[i], i32.
Napi::Value merge_token_ids(Info info) {
  return guarded(info, "mergeTokenIds", [&] {
    MergeTokenIdsParams p{};
    p.out = static_cast<int32_t*>(ptr_arg(info, 0));
    p.ids = static_cast<const int32_t*>(ptr_arg(info, 1));
    p.prev = static_cast<const int32_t*>(ptr_arg(info, 2));
    p.rows = static_cast<const int32_t*>(ptr_arg(info, 3));
    p.n = int_arg(info, 4);
    p.prev_n = int_arg(info, 5);
    p.stream = stream_or_throw();
    run_merge_token_ids(p);
    return info.Env().Undefined();
  });
}

}  // namespace

void register_dense_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("gatherRows", Napi::Function::New(env, gather_rows, "gatherRows"));
  exports.Set("copy2d", Napi::Function::New(env, copy2d, "copy2d"));
  exports.Set("axpby", Napi::Function::New(env, axpby, "axpby"));
  exports.Set("rmsNorm", Napi::Function::New(env, rms_norm, "rmsNorm"));
  exports.Set("rope", Napi::Function::New(env, rope, "rope"));
  exports.Set("siluMul", Napi::Function::New(env, silu_mul, "siluMul"));
  exports.Set("gemm", Napi::Function::New(env, gemm, "gemm"));
  exports.Set("normLinear", Napi::Function::New(env, norm_linear, "normLinear"));
  exports.Set("bmmGrouped", Napi::Function::New(env, bmm_grouped, "bmmGrouped"));
  exports.Set("transpose", Napi::Function::New(env, transpose, "transpose"));
  exports.Set("mlaAbsorbQuery", Napi::Function::New(env, mla_absorb_query, "mlaAbsorbQuery"));
  exports.Set("mlaInputs", Napi::Function::New(env, mla_inputs, "mlaInputs"));
  exports.Set("mlaInputsAbsorbQuery", Napi::Function::New(env, mla_inputs_absorb_query, "mlaInputsAbsorbQuery"));
  exports.Set("fillRandom", Napi::Function::New(env, fill_random, "fillRandom"));
  exports.Set("kvCacheWrite", Napi::Function::New(env, kv_cache_write, "kvCacheWrite"));
  exports.Set("mergeTokenIds", Napi::Function::New(env, merge_token_ids, "mergeTokenIds"));
}

}  // namespace flashserve
