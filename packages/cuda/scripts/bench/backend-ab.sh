#!/usr/bin/env bash
# Decode step at batch 1, 2, 4 by attention backend: flashmla, cuda-mla and none (attention replaced by
# the KV write), four interleaved rounds. ON THE GPU MACHINE, after packages/cuda/scripts/
# prepare-gpu-suite.sh here (carry .device): bash packages/cuda/scripts/bench/backend-ab.sh
# Builds and checks through gpu-suite.sh first; prints each backend's step times, sorted, last.
set -uo pipefail
cd "$(dirname "$0")/../../../.."
OUT=${OUT:-/tmp/ab}; mkdir -p /tmp/ab
OUT=/tmp/ab/suite BENCH_BACKEND=flashmla BENCH_ARGS="--batches 1 --no-prefill --steps 30" bash packages/cuda/scripts/gpu-suite.sh > /tmp/ab/suite.log 2>&1
export FLASHSERVE_CUDA_ADDON=/tmp/flashserve-cuda-build/Release/flashserve_cuda.node
export FLASHSERVE_MLA_ADDON=/tmp/flashserve-mla-build/Release/flashserve_mla.node
for i in 1 2 3 4; do
  for b in flashmla cuda-mla none; do
    BENCH_BACKEND=$b /tmp/node .device/decode-bench.mjs --batches 1,2,4 --no-prefill --steps 60 2>&1 | grep -E '^\{"batch' | sed "s/^/$b /" >> /tmp/ab/ab.log
  done
done
cp /tmp/ab/ab.log $OUT/ab.log
grep -E "summary|ok|FAIL" /tmp/ab/suite.log | tail -8
for b in flashmla cuda-mla none; do for B in 1 2 4; do
  echo "$b B=$B: $(grep "^$b {\"batch\":$B," /tmp/ab/ab.log | sed 's/.*"graph_step_ms":\([0-9.]*\).*/\1/' | sort -n | tr '\n' ' ')"
done; done
