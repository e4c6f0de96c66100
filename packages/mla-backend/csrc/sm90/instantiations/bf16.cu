// The bf16 instantiation of the Hopper MLA decode kernel (one type per file: they compile in parallel).
#include "sm90/decode.cuh"

namespace flashserve::mla::sm90 {
template cudaError_t run_mla_decode<__nv_bfloat16>(const DecodeParams& params);
template int launch_cluster_size<__nv_bfloat16>(int q_rows, int num_parts, int tuning);
}  // namespace flashserve::mla::sm90
