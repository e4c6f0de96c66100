#!/usr/bin/env bash
# Builds and runs the standalone GPU suite of @flashserve/mla-backend (no Node needed):
#   nvcc build -> mla_test (correctness) -> mla_bench (FlashMLA's 48-case grid), short table last.
# Usage, from the package root: scripts/gpu-suite.sh [test|bench|all] (default all); any other word
# only builds. Env: TUNING=a,b,... (benchmark A/B of DecodeParams::tuning), SKIP_BUILD=1, SEED.
# Logs go to $OUT (the GPU machine's result folder) when set, else to build/gpu-suite/.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
BUILD=build/gpu-suite
LOGS=${OUT:-$BUILD}
mkdir -p "$BUILD" "$LOGS"
NVCC=${NVCC:-nvcc}
# @flashserve/cuda's kernel headers (timeline, L2 prefetch) are searched after this package's own.
COMMON=(-std=c++17 -O3 -lineinfo -Icsrc -I../cuda/csrc --expt-relaxed-constexpr)
HOPPER=(-gencode=arch=compute_90a,code=sm_90a)
PORTABLE=(-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90)

t0=$(date +%s)
# SKIP_BUILD=1: use the binaries already in $BUILD (built on this machine and carried to the GPU
# machine, whose device time is scarce: the build takes about a minute).
if [[ ${SKIP_BUILD:-0} == 1 && -x $BUILD/mla_test && -x $BUILD/mla_bench ]]; then
  echo "[gpu-suite] SKIP_BUILD=1: using the prebuilt $BUILD/mla_test and mla_bench"
else
build() {  # out src flags...
  local out=$1 src=$2; shift 2
  "$NVCC" "${COMMON[@]}" "$@" -c "$src" -o "$BUILD/$out" 2>"$BUILD/$out.log" || { cat "$BUILD/$out.log"; return 1; }
}
build bf16.o csrc/sm90/instantiations/bf16.cu "${HOPPER[@]}" --resource-usage &
build probe.o csrc/sm90/layout_probe.cu "${HOPPER[@]}" &
build metadata.o csrc/common/metadata.cu "${PORTABLE[@]}" &
build combine.o csrc/common/combine.cu "${PORTABLE[@]}" &
build combine_uv.o csrc/common/combine_uv.cu "${PORTABLE[@]}" &
build portable.o csrc/portable/decode.cu "${PORTABLE[@]}" &
build mla_test.o csrc/tests/mla_test.cu "${PORTABLE[@]}" &
build mla_bench.o bench/mla_bench.cu "${PORTABLE[@]}" &
build timeline.o ../cuda/csrc/kernels/timeline.cu "${PORTABLE[@]}" &
wait
KOBJ=("$BUILD"/{bf16,probe,metadata,combine,combine_uv,portable,timeline}.o)
"$NVCC" "${PORTABLE[@]}" "${HOPPER[@]}" "${KOBJ[@]}" "$BUILD/mla_test.o" -o "$BUILD/mla_test"
"$NVCC" "${PORTABLE[@]}" "${HOPPER[@]}" "${KOBJ[@]}" "$BUILD/mla_bench.o" -o "$BUILD/mla_bench"
fi
grep -E "registers|spill" "$BUILD/bf16.o.log" | sed 's/^/[resource] /' || true
# ptxas serialises every wgmma of a kernel when it cannot prove the async pipeline safe, and only
# says so as an "info" line: surface it, since it costs a third of the speed.
grep -E "C75[0-9][0-9]" "$BUILD/bf16.o.log" | sed 's/^/[WARNING] /' || true
if command -v cuobjdump >/dev/null; then
  cuobjdump -sass "$BUILD/bf16.o" >"$BUILD/bf16.sass" 2>/dev/null &&
    echo "[sass] $(grep -cE 'HGMMA' "$BUILD/bf16.sass") HGMMA, $(grep -cE 'UTMALDG' "$BUILD/bf16.sass") UTMALDG, $(grep -cE 'LDL|STL' "$BUILD/bf16.sass") local-memory ops"
fi
echo "[gpu-suite] built in $(( $(date +%s) - t0 ))s"

status=0
if [[ $MODE == all || $MODE == test ]]; then
  timeout ${TEST_TIMEOUT:-180} "$BUILD/mla_test" ${SEED:-} 2>&1 | tee "$LOGS/mla_test.log" || status=1
fi
if [[ $MODE == all || $MODE == bench ]]; then
  # The compute-bound cases run at the card's power cap and its clock moves (NOTES.md, v8): log
  # power and SM clock once a second beside the benchmark.
  DMON=
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s pc -d 1 >"$LOGS/dmon.log" 2>&1 &
    DMON=$!
  fi
  timeout ${BENCH_TIMEOUT:-240} "$BUILD/mla_bench" bench/flashmla-h100.txt ${TUNING:+--tuning=$TUNING} 2>&1 | tee "$LOGS/mla_bench.log" || status=1
  [[ -n $DMON ]] && kill "$DMON" 2>/dev/null || true
  if [[ ${PORTABLE_BENCH:-0} == 1 ]]; then
    "$BUILD/mla_bench" bench/flashmla-h100.txt --portable 2>&1 | tee "$LOGS/mla_bench_portable.log" || status=1
  fi
fi
echo "================ summary ================"
[[ -f $LOGS/mla_test.log ]] && grep -E "probe|FAIL|mla_test:" "$LOGS/mla_test.log" | tail -n 12
[[ -f $LOGS/mla_bench.log ]] && grep -E "copy|SUMMARY" "$LOGS/mla_bench.log"
if [[ -s $LOGS/dmon.log ]]; then  # seconds under load (> 250 W): SM clock min / median / max
  grep -v '^#' "$LOGS/dmon.log" | awk 'NF >= 6 && $2 + 0 > 250 {print $6, $2}' | sort -n |
    awk '{c[NR] = $1} END {if (NR) printf "loaded: %d s, SM clock %s / %s / %s MHz\n", NR, c[1], c[int(NR / 2) + 1], c[NR]}'
fi
[[ -f $LOGS/mla_bench_portable.log ]] && grep -E "SUMMARY" "$LOGS/mla_bench_portable.log"
exit $status
