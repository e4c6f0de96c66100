// The bf16 instantiation of the Hopper MLA decode kernel (one type per file: they compile in parallel).
#include "sm90/decode.cuh"

namespace flashserve::mla::sm90 {
template cudaError_t run_mla_decode<__nv_bfloat16>(const DecodeParams& params);
template cudaError_t run_mla_decode_uv<__nv_bfloat16>(const DecodeParams& params, const CombineUvParams& uv);
}  // namespace flashserve::mla::sm90
