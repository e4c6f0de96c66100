#!/usr/bin/env bash
# NcclProcessGroup on a machine of several GPUs, run ON THE GPU MACHINE from the repository root:
#   bash packages/cuda/scripts/gpu-nccl.sh [worldSize [--step H,V/N,layers [--batches 1,32,128]]]
# (prepare .device/ first with packages/cuda/scripts/prepare-gpu-suite.sh and carry it). Builds the
# addon, then starts one process per GPU (scripts/gpu/nccl-allreduce.ts): values of all-reduce,
# all-gather and broadcast checked on every rank, all-reduce bus bandwidth from 1 MiB to 1 GiB.
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0 in every rank's environment).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
export NCCL_NVLS_ENABLE=0
N=${1:-$(nvidia-smi -L | wc -l)}
shift || true
OUT=${OUT:-/tmp/gpu-nccl}
mkdir -p "$OUT"
BUILD=/tmp/flashserve-cuda-build
cmake -S packages/cuda -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHSERVE_WITH_CUBLAS=ON \
  -DFLASHSERVE_SM90_ONLY=ON "-DNODE_API_INCLUDE_DIRS=$ROOT/.device/napi/node-api-headers;$ROOT/.device/napi/node-addon-api" \
  > "$OUT/build.log" 2>&1 && cmake --build "$BUILD" -j "$(nproc)" --target flashserve_cuda >> "$OUT/build.log" 2>&1 ||
  { grep -E "error" "$OUT/build.log" | head -20; echo "gpu-nccl: build FAILED"; exit 1; }
[ -x /tmp/node ] || { xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node; }
export FLASHSERVE_CUDA_ADDON="$BUILD/Release/flashserve_cuda.node"
ID="$OUT/nccl-id.bin"
rm -f "$ID"
pids=()
for r in $(seq 0 $((N - 1))); do
  NCCL_NVLS_ENABLE=0 timeout 240 /tmp/node .device/nccl-allreduce.mjs "$r" "$N" "$ID" "$@" > "$OUT/rank$r.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for r in $(seq 1 $((N - 1))); do grep -vE "^\s*$" "$OUT/rank$r.log" | tail -3; done
cat "$OUT/rank0.log"
[ $rc -eq 0 ] && echo "gpu-nccl: ranks exited 0 ($N GPUs)" || echo "gpu-nccl: a rank FAILED"
exit $rc
