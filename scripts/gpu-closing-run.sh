#!/usr/bin/env bash
# One GPU call that re-measures every GPU figure of the READMEs: the kernel suite (mla_test + the
# 48-case bench), transformers at batch 32, the server end to end (graphs mode, with V2-Lite tokens/s),
# the cuda suite (op test, Node checks, decode bench). Everything lands in /tmp/final, packed into
# $OUT/final.tgz; a summary is printed last. Prepare HERE first:
#   (cd packages/mla-backend && scripts/gpu-suite.sh build)
#   bash packages/server/scripts/prepare-gpu-e2e.sh && bash packages/cuda/scripts/prepare-gpu-suite.sh
# then on the GPU machine (carry .device and packages/mla-backend/build/gpu-suite):
#   bash scripts/gpu-closing-run.sh
# AB_TOGGLES="A B ..." adds interleaved batch-1/2 decode runs with each environment toggle set to 1
# against the default (four rounds, after the suites).
set -uo pipefail
cd "$(dirname "$0")/.."
# A warm machine keeps build trees from earlier calls, and the copied sources may carry older mtimes
# than those builds: start clean so every kernel is rebuilt from this tree.
rm -rf /tmp/flashserve-cuda-build /tmp/flashserve-mla-build /tmp/final
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
if [ -n "${AB_TOGGLES:-}" ]; then
  export FLASHSERVE_CUDA_ADDON=/tmp/flashserve-cuda-build/Release/flashserve_cuda.node
  export FLASHSERVE_MLA_ADDON=/tmp/flashserve-mla-build/Release/flashserve_mla.node
  xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node
  for i in 1 2 3 4; do
    for arm in default $AB_TOGGLES; do
      if [ "$arm" = default ]; then env_arm=(); else env_arm=("$arm=1"); fi
      env "${env_arm[@]}" timeout 60 /tmp/node .device/decode-bench.mjs --batches 1,2 --no-prefill --steps 60 2>&1 |
        grep '^{"batch' | sed "s/^/$arm /" >> $F/ab.log
    done
  done
fi
t5=$(date +%s)
echo "times: mla $((t1-t0)) s, transformers $((t2-t1)) s, e2e $((t3-t2)) s, cuda $((t4-t3)) s, a/b $((t5-t4)) s" > $F/times.txt
tar czf $OUT/final.tgz -C /tmp final
{
  cat $F/gpu.txt $F/times.txt
  echo "--- mla"; grep -E "ALL PASSED|FAILED|geomean|worst|copy|below" $F/mla-suite.log | head -12
  echo "--- transformers"; tail -2 $F/transformers.log
  echo "--- e2e"; grep -E "ALL OK|FAILED|tok/s|ms/decode" $F/e2e.log | head -20
  echo "--- cuda"; tail -25 $F/cuda-suite.log
  if [ -f $F/ab.log ]; then
    echo "--- a/b: graph_step_ms (graph_fwd_ms), sorted"
    for arm in default ${AB_TOGGLES:-}; do for B in 1 2; do
      echo "$arm B=$B: $(grep "^$arm {\"batch\":$B," $F/ab.log | sed 's/.*"graph_step_ms":\([0-9.]*\),"graph_fwd_ms":\([0-9.]*\).*/\1(\2)/' | sort -n | tr '\n' ' ')"
    done; done
  fi
} | tee $OUT/summary.txt
