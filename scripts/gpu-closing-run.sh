#!/usr/bin/env bash
# One GPU call that re-measures every GPU figure of the READMEs: the kernel suite (mla_test + the
# 48-case bench), transformers at batch 32, the server end to end (graphs mode, with V2-Lite tokens/s),
# the cuda suite (op test, Node checks, decode bench). Everything lands in /tmp/final, packed into
# $OUT/final.tgz; a summary is printed last. Prepare HERE first:
#   (cd packages/mla-backend && scripts/gpu-suite.sh build)
#   bash packages/server/scripts/prepare-gpu-e2e.sh && bash packages/cuda/scripts/prepare-gpu-suite.sh
# then on the GPU machine (carry .device and packages/mla-backend/build/gpu-suite):
#   bash scripts/gpu-closing-run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
F=/tmp/final; mkdir -p $F
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > $F/gpu.txt 2>&1
t0=$(date +%s)
( cd packages/mla-backend && SKIP_BUILD=1 OUT=$F/mla TEST_TIMEOUT=150 BENCH_TIMEOUT=200 scripts/gpu-suite.sh all ) > $F/mla-suite.log 2>&1
t1=$(date +%s)
timeout 200 python3 packages/cuda/scripts/bench/transformers_baseline.py --batch 32 > $F/transformers.log 2>&1
t2=$(date +%s)
GPU_E2E_GRAPHS=1 OUT=$F/e2e timeout 240 bash packages/server/scripts/gpu-e2e.sh > $F/e2e.log 2>&1
t3=$(date +%s)
OUT=$F/cuda BENCH_ARGS="--steps 30 --batches 1,8,32,128,256" timeout 300 bash packages/cuda/scripts/gpu-suite.sh > $F/cuda-suite.log 2>&1
t4=$(date +%s)
echo "times: mla $((t1-t0)) s, transformers $((t2-t1)) s, e2e $((t3-t2)) s, cuda $((t4-t3)) s" > $F/times.txt
tar czf $OUT/final.tgz -C /tmp final
{
  cat $F/gpu.txt $F/times.txt
  echo "--- mla"; grep -E "ALL PASSED|FAILED|geomean|worst|copy|below" $F/mla-suite.log | head -12
  echo "--- transformers"; tail -2 $F/transformers.log
  echo "--- e2e"; grep -E "ALL OK|FAILED|tok/s|ms/decode" $F/e2e.log | head -20
  echo "--- cuda"; tail -25 $F/cuda-suite.log
} | tee $OUT/summary.txt
