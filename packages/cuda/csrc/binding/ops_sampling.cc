// sample(): the GPU sampler (see kernels/sampling.h).
#include "binding/napi_util.h"
#include "kernels/sampling.h"
#include "runtime/env.h"

namespace flashserve {
namespace {

using Info = const Napi::CallbackInfo&;

// The split greedy path's scratch (SamplingParams::split_scratch): kept between calls, because its
// per-row counters must start at zero and the kernel leaves them at zero; grown (and zeroed) when a
// call needs more. Null when the split does not apply to this vocabulary.
// FLASHSERVE_SAMPLE_ONE_BLOCK=1 (A/B timing): no scratch, one block a row as before.
void* split_scratch(int rows, int vocab, cudaStream_t stream) {
  static const bool one_block = env_flag("FLASHSERVE_SAMPLE_ONE_BLOCK");
  if (one_block) return nullptr;
  // Per thread: the scratch lives on this thread's device (runtime() is per thread).
  thread_local void* buf = nullptr;
  thread_local size_t have = 0;
  const size_t need = sampling_split_bytes(rows, vocab);
  if (need == 0) return nullptr;
  if (need > have) {
    if (buf) runtime().allocator().release(buf);
    buf = nullptr;
    have = 0;
    void* fresh = runtime().allocator().allocate(need);
    check_cuda(cudaMemsetAsync(fresh, 0, need, stream), "sample: scratch");
    buf = fresh;
    have = need;
  }
  return buf;
}

// sample(logits, logitsBf16, rows, vocab, temperature, topK, topP, minP, uniform, outTokens, outLogprobs,
//        numTop, topIds | 0n, topLogprobs | 0n)
Napi::Value sample(Info info) {
  return guarded(info, "sample", [&] {
    SamplingParams p{};
    p.logits = ptr_arg(info, 0);
    p.logits_bf16 = info[1].ToBoolean().Value();
    p.rows = int_arg(info, 2);
    p.vocab = int_arg(info, 3);
    p.temperature = static_cast<const float*>(ptr_arg(info, 4));
    p.top_k = static_cast<const int32_t*>(ptr_arg(info, 5));
    p.top_p = static_cast<const float*>(ptr_arg(info, 6));
    p.min_p = static_cast<const float*>(ptr_arg(info, 7));
    p.uniform = static_cast<const float*>(ptr_arg(info, 8));
    p.out_tokens = static_cast<int32_t*>(ptr_arg(info, 9));
    p.out_logprobs = static_cast<float*>(ptr_arg(info, 10));
    p.num_top = int_arg(info, 11);
    p.top_ids = static_cast<int32_t*>(ptr_arg(info, 12));
    p.top_logprobs = static_cast<float*>(ptr_arg(info, 13));
    p.stream = stream_or_throw();
    p.split_scratch = split_scratch(p.rows, p.vocab, p.stream);
    run_sampling(p);
    return info.Env().Undefined();
  });
}

}  // namespace

void register_sampling(Napi::Env env, Napi::Object exports) {
  exports.Set("sample", Napi::Function::New(env, sample, "sample"));
}

}  // namespace flashserve
