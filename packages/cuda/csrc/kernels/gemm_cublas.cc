// cuBLASLt behind run_gemm. One handle and one workspace for the process; the chosen algorithm is
// cached per problem shape because the heuristic query costs more than a decode-sized GEMM.
//
// NOTE: cuBLASLt's first heuristic pick was measured 2-6x slower than its best for some decode shapes
// on H100 (m=8 x n=3072 x k=2048: 60 us against 7 us in another run; k=2816 at m=1: 32 us), so when a
// plan is made outside graph capture, up to ALGO_CANDIDATES candidates are timed once on the real
// operands and the fastest is kept.
#include <cublasLt.h>

#include <map>
#include <string>
#include <tuple>

#include "kernels/gemm.h"
#include "runtime/check.h"
#include "runtime/runtime.h"

namespace flashserve {
namespace {

// NOTE: 32 MiB lets cuBLASLt pick split-K kernels for the skinny decode shapes.
constexpr size_t WORKSPACE_BYTES = size_t{32} << 20;
constexpr int ALGO_CANDIDATES = 8;
constexpr int TUNE_REPS = 3;

void check_lt(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw CudaError(std::string(what) + " failed: cuBLAS status " + std::to_string(st), cudaErrorUnknown);
}

using Key = std::tuple<int, int, int, int64_t, int64_t, int64_t, bool, int, int64_t, int64_t, int64_t, int>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct LtState {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<Key, Plan> plans;
};

LtState& state() {
  // Per thread, like the runtime: a cuBLASLt handle and its workspace belong to one device.
  thread_local LtState s;
  if (!s.handle) {
    check_lt(cublasLtCreate(&s.handle), "linear (cublasLtCreate)");
    s.workspace = runtime().allocator().allocate(WORKSPACE_BYTES);
  }
  return s;
}

void set_batch(cublasLtMatrixLayout_t layout, int batch, int64_t stride) {
  if (batch <= 1) return;
  check_lt(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch),
           "gemm (batch count)");
  check_lt(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                            sizeof stride),
           "gemm (batch stride)");
}

// cuBLASLt is column-major. A row-major [r, c] matrix with row stride ld is the column-major
// [c, r] matrix with leading dimension ld, so C^T = op(B)^T A^T is computed:
//   cuBLAS "A" = our B: trans_b -> stored col-major [k, n], used transposed; else [n, k] as is;
//   cuBLAS "B" = our A: col-major [k, m];  cuBLAS "C" = col-major [n, m].
// Times one algorithm on the real operands (the output is rewritten by the final call anyway).
float time_algo(LtState& s, const Plan& plan, const cublasLtMatmulAlgo_t& algo, const GemmParams& p) {
  const float alpha = 1.f, beta = 0.f;
  cudaEvent_t start = nullptr, stop = nullptr;
  check_cuda(cudaEventCreate(&start), "gemm (tuning event)");
  check_cuda(cudaEventCreate(&stop), "gemm (tuning event)");
  float ms = -1.f;
  // Warm once, then time TUNE_REPS back-to-back runs.
  cublasStatus_t st = cublasLtMatmul(s.handle, plan.desc, &alpha, p.b, plan.a, p.a, plan.b, &beta, p.c, plan.c, p.c,
                                     plan.c, &algo, s.workspace, WORKSPACE_BYTES, p.stream);
  if (st == CUBLAS_STATUS_SUCCESS) {
    cudaEventRecord(start, p.stream);
    for (int i = 0; i < TUNE_REPS && st == CUBLAS_STATUS_SUCCESS; ++i) {
      st = cublasLtMatmul(s.handle, plan.desc, &alpha, p.b, plan.a, p.a, plan.b, &beta, p.c, plan.c, p.c, plan.c, &algo,
                          s.workspace, WORKSPACE_BYTES, p.stream);
    }
    cudaEventRecord(stop, p.stream);
    if (cudaEventSynchronize(stop) == cudaSuccess && st == CUBLAS_STATUS_SUCCESS) cudaEventElapsedTime(&ms, start, stop);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGetLastError();  // a candidate that failed to launch is skipped, not an error of the op
  return st == CUBLAS_STATUS_SUCCESS ? ms : -1.f;
}

Plan make_plan(LtState& s, const GemmParams& p) {
  Plan plan;
  check_lt(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "gemm (desc)");
  const cublasOperation_t op_a = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a), "gemm (transa)");
  check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b), "gemm (transb)");
  if (p.trans_b) {
    check_lt(cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16BF, p.k, p.n, p.ldb), "gemm (layout A)");
  } else {
    check_lt(cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16BF, p.n, p.k, p.ldb), "gemm (layout A)");
  }
  check_lt(cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_16BF, p.k, p.m, p.lda), "gemm (layout B)");
  const cudaDataType_t ct = p.c_dtype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
  check_lt(cublasLtMatrixLayoutCreate(&plan.c, ct, p.n, p.m, p.ldc), "gemm (layout C)");
  set_batch(plan.a, p.batch, p.stride_b);
  set_batch(plan.b, p.batch, p.stride_a);
  set_batch(plan.c, p.batch, p.stride_c);

  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "gemm (preference)");
  const size_t ws = WORKSPACE_BYTES;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulHeuristicResult_t results[ALGO_CANDIDATES] = {};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(s.handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref,
                                                           ALGO_CANDIDATES, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  check_lt(st, "gemm (heuristic)");
  if (found == 0) {
    throw std::invalid_argument("gemm: cuBLASLt has no algorithm for m=" + std::to_string(p.m) + " n=" +
                                std::to_string(p.n) + " k=" + std::to_string(p.k));
  }
  plan.algo = results[0].algo;
  // Timing needs a stream that executes: under graph capture the first pick is kept.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(p.stream, &capture);
  if (found > 1 && capture == cudaStreamCaptureStatusNone) {
    float best = -1.f;
    for (int i = 0; i < found; ++i) {
      const float ms = time_algo(s, plan, results[i].algo, p);
      if (ms >= 0.f && (best < 0.f || ms < best)) {
        best = ms;
        plan.algo = results[i].algo;
      }
    }
  }
  return plan;
}

}  // namespace

void run_gemm(GemmParams& p) {
  if (p.m == 0 || p.n == 0) return;
  LtState& s = state();
  const Key key{p.m, p.n, p.k, p.lda, p.ldb, p.ldc, p.trans_b, p.batch, p.stride_a, p.stride_b, p.stride_c,
                static_cast<int>(p.c_dtype)};
  auto it = s.plans.find(key);
  if (it == s.plans.end()) it = s.plans.emplace(key, make_plan(s, p)).first;
  const Plan& plan = it->second;
  const float alpha = 1.f, beta = 0.f;
  check_lt(cublasLtMatmul(s.handle, plan.desc, &alpha, p.b, plan.a, p.a, plan.b, &beta, p.c, plan.c, p.c, plan.c,
                          &plan.algo, s.workspace, WORKSPACE_BYTES, p.stream),
           "gemm (cublasLtMatmul)");
}

}  // namespace flashserve
