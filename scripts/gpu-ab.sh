#!/usr/bin/env bash
# One GPU call for a batch-1 experiment behind environment toggles: builds and checks the default
# configuration (cuda suite: op test, Node checks, decode bench at batches 1 and 32), repeats the
# correctness checks with CHECK_ENV set (the experiment on: op test, Node checks, mla_test), then runs
# interleaved decode benchmarks, four rounds of every arm of ARMS. An arm is `default` or toggles
# joined by `+`, each set to 1 unless given as NAME=VALUE (ARMS="default FLASHSERVE_X FLASHSERVE_X+FLASHSERVE_Y=4"), or a
# marginal-cost probe P:<op>@<blocks> (FLASHSERVE_PROBE_DOUBLE, kernels/launch.h; '~' for a space),
# alone or joined to toggles (FLASHSERVE_X+P:mla-decode).
# Prepare HERE first (carry .device and packages/mla-backend/build/gpu-suite):
#   bash packages/cuda/scripts/prepare-gpu-suite.sh && (cd packages/mla-backend && scripts/gpu-suite.sh build)
# then on the GPU machine: CHECK_ENV="FLASHSERVE_X=1 ..." ARMS="..." bash scripts/gpu-ab.sh
# MLA_TEST=1 adds mla_test (default configuration). Logs under $OUT/ab (or /tmp/ab); the summary is
# printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
rm -rf /tmp/flashserve-cuda-build /tmp/flashserve-mla-build
R=${OUT:-/tmp}/ab
mkdir -p "$R"
ROUNDS=${ROUNDS:-4}
BATCHES=${BATCHES:-1,2}
OUT=$R/suite BENCH_BACKEND=flashmla BENCH_ARGS="--batches 1,32 --no-prefill --steps 30" \
  bash packages/cuda/scripts/gpu-suite.sh ${SUITE_ARGS:-} > "$R/suite.log" 2>&1
[ -x /tmp/node ] || { xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node; }
export FLASHSERVE_CUDA_ADDON=/tmp/flashserve-cuda-build/Release/flashserve_cuda.node
export FLASHSERVE_MLA_ADDON=/tmp/flashserve-mla-build/Release/flashserve_mla.node
if [ -n "${CHECK_ENV:-}" ]; then
  env $CHECK_ENV /tmp/flashserve-cuda-build/flashserve_cuda_optest > "$R/optest-exp.log" 2>&1
  echo "op test (experiment): rc=$?" > "$R/exp.txt"
  env $CHECK_ENV /tmp/node .device/gpu-check.mjs "$PWD/packages/models/test/fixtures" > "$R/gpu-check-exp.log" 2>&1
  echo "Node checks (experiment): rc=$? $(grep -E "FAILED|checks|FAIL$" "$R/gpu-check-exp.log" | tail -3 | tr "\n" " ")" >> "$R/exp.txt"
  (cd packages/mla-backend && env $CHECK_ENV SKIP_BUILD=1 OUT=$R/mla scripts/gpu-suite.sh test) > "$R/mla-exp.log" 2>&1
  echo "mla_test (experiment): $(grep -E 'ALL PASSED|FAILED' "$R/mla-exp.log" | head -1)" >> "$R/exp.txt"
fi
if [ "${MLA_TEST:-0}" = 1 ]; then  # the MLA kernels' correctness run (mla_test), default configuration
  (cd packages/mla-backend && SKIP_BUILD=1 OUT=$R/mla scripts/gpu-suite.sh test) > "$R/mla.log" 2>&1
  echo "mla_test: $(grep -E 'ALL PASSED|FAILED' "$R/mla.log" | head -1)" >> "$R/exp.txt"
fi
for i in $(seq "$ROUNDS"); do
  for arm in ${ARMS:-default}; do
    env_arm=()
    # A part P:<op>@<blocks> ('~' for a space) is FLASHSERVE_PROBE_DOUBLE=<op>@<blocks> (launch.h).
    if [ "$arm" != default ]; then for t in ${arm//+/ }; do
      if [[ "$t" == P:* ]]; then v=${t#P:}; env_arm+=("FLASHSERVE_PROBE_DOUBLE=${v//\~/ }");
      elif [[ "$t" == *=* ]]; then env_arm+=("$t"); else env_arm+=("$t=1"); fi
    done; fi
    env "${env_arm[@]}" timeout 60 /tmp/node .device/decode-bench.mjs --batches "$BATCHES" --no-prefill --steps 60 2>&1 |
      grep '^{"batch' | sed "s/^/$arm /" >> "$R/ab.log"
  done
done
{
  tail -12 "$R/suite.log"
  [ -f "$R/exp.txt" ] && cat "$R/exp.txt"
  echo "--- a/b: graph_step_ms (graph_fwd_ms), sorted"
  for arm in ${ARMS:-default}; do for B in ${BATCHES//,/ }; do
    echo "$arm B=$B: $(grep "^$arm {\"batch\":$B," "$R/ab.log" | sed 's/.*"graph_step_ms":\([0-9.]*\),"graph_fwd_ms":\([0-9.]*\).*/\1(\2)/' | sort -n | tr '\n' ' ')"
  done; done
} | tee "$R/summary.txt"
