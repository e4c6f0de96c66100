#!/usr/bin/env bash
# One ncu profile of one decode launch of one benchmark case, plus the case's timing, on the GPU
# machine, with the binaries of scripts/gpu-suite.sh (built here, carried). Usage, from the package
# root: scripts/profile.sh [s,h_q,s_q,varlen] (default 16384,128,2,0). Env: TUNING (default 0),
# SECTIONS (ncu --set, default full). Reports go to $OUT (else build/profile/).
set -uo pipefail
cd "$(dirname "$0")/.."
CASE=${1:-16384,128,2,0}
B=build/gpu-suite
O=${OUT:-build/profile}
mkdir -p "$O"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv >"$O/timing.txt" 2>&1
"$B/mla_bench" bench/flashmla-h100.txt --only="$CASE" --tuning="${TUNING:-0},16" >>"$O/timing.txt" 2>&1
# Skip the warm-up launches' first few, profile one decode launch (the combine is filtered out).
timeout ${NCU_TIMEOUT:-240} ncu --clock-control none --set "${SECTIONS:-full}" --import-source yes \
  --kernel-name regex:mla_decode_kernel --launch-skip 20 --launch-count 1 -f -o "$O/prof" \
  "$B/mla_bench" bench/flashmla-h100.txt --only="$CASE" --tuning="${TUNING:-0}" >"$O/ncu_run.txt" 2>&1
ncu -i "$O/prof.ncu-rep" --page details >"$O/ncu_details.txt" 2>&1
ncu -i "$O/prof.ncu-rep" --page raw >"$O/ncu_raw.txt" 2>&1
ncu -i "$O/prof.ncu-rep" --page source --csv --print-source sass >"$O/ncu_sass.csv" 2>&1
gzip -f "$O/ncu_sass.csv" "$O/ncu_raw.txt"
echo "================ profile ================"
cat "$O/timing.txt"
grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Hit|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy" "$O/ncu_details.txt" | head -20
