#!/usr/bin/env bash
# The decode step's kernel timeline, ON THE GPU MACHINE from the repository root:
#   bash packages/cuda/scripts/gpu-timeline.sh [decode-bench options]
# (default options: --batches 1 --no-prefill --steps 40). Builds both addons with the stamps compiled
# in (CMake option FLASHSERVE_KERNEL_TIMELINE=ON, in build trees of their own: a default build has no
# stamps and refuses --timeline), then runs the decode benchmark with --timeline: per op, its launches a
# step and its cost inside the chain (csrc/kernels/timeline.h). The stamps cost ~2.4% of a batch-1 step
# themselves. Prepare HERE first with packages/cuda/scripts/prepare-gpu-suite.sh and carry .device.
# Logs in $OUT (or /tmp/gpu-timeline).
set -uo pipefail
cd "$(dirname "$0")/../../.."
LOGS=${OUT:-/tmp/gpu-timeline}
mkdir -p "$LOGS"
CUDA_BUILD=/tmp/flashserve-cuda-timeline MLA_BUILD=/tmp/flashserve-mla-timeline
GPU_ADDON_CMAKE_ARGS=-DFLASHSERVE_KERNEL_TIMELINE=ON
# shellcheck source=../../server/scripts/lib/gpu-common.sh
source packages/server/scripts/lib/gpu-common.sh
build_gpu_addons "$LOGS" || exit 1
[ -x /tmp/node ] || { xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node; }
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--batches 1 --no-prefill --steps 40)
/tmp/node .device/decode-bench.mjs "${args[@]}" --timeline > "$LOGS/timeline.log" 2>&1
rc=$?
grep -A60 "^timeline B=" "$LOGS/timeline.log"
exit $rc
