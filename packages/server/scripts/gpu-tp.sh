#!/usr/bin/env bash
# Issue 11 on a machine of two GPUs, ON THE GPU MACHINE, from the repository root:
#   bash packages/server/scripts/gpu-tp.sh            (carry=[".device"], kind nvidia-h100-x2)
# after packages/server/scripts/prepare-gpu-e2e.sh ran here (it bundles .device/tp/ too). Steps:
#   1. unpacks the carried Node; builds both addons (cuda with cuBLAS, mla-backend);
#   2. NCCL alone, one process per GPU (packages/cuda/scripts/gpu-nccl.sh): values of every collective,
#      all-reduce bus bandwidth 1 MiB .. 1 GiB, and one V2-Lite TP=2 decode step's collectives alone;
#   3. tp-check.mjs: the engine on the kv_lora_rank-512 fixture with flashmla, TP=2 vs TP=1 greedy
#      (eager and CUDA graphs), and rank 1 killed mid-request;
#   4. the real server (`flashserve serve --device cuda`): TP=2 greedy equals TP=1 through the openai
#      client; then a TP=2 server whose rank 1 dies mid-request: that request fails with a 500 naming
#      the rank and the server exits 1 by itself;
#   5. tp-bench.mjs at TP=1 and TP=2 (separate processes): V2-Lite shapes, batch 1/32/128, 1k context;
#   6. prints one table last; logs packed in $OUT/gpu-tp-logs.tgz.
# TP_STEPS (default nccl,check,server,bench) picks steps 2-5; the benchmark's floors need nccl's step.
# NVLink multicast stays off: NCCL_NVLS_ENABLE=0 here, in every process and every rank thread.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
export NCCL_NVLS_ENABLE=0
RESULTS=${OUT:-/tmp/gpu-tp}
mkdir -p "$RESULTS"
WORK=$(mktemp -d /tmp/gpu-tp.XXXXXX)
FIXTURE=$ROOT/packages/models/test/fixtures/gpu-shaped-576-bf16
# shellcheck source=lib/gpu-common.sh
source "$ROOT/packages/server/scripts/lib/gpu-common.sh"
NODE=/tmp/node
TP=.device/tp
status=0
summary=()
step() { summary+=("$(printf '%-58s %s' "$1" "$2")"); }
want() { [[ ",${TP_STEPS:-nccl,check,server,bench}," == *",$1,"* ]]; }
finish() {
  tar czf "$RESULTS/gpu-tp-logs.tgz" -C "$WORK" . 2>/dev/null
  echo
  echo "=== gpu-tp summary ($(nvidia-smi -L | wc -l) GPUs: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
  printf '%s\n' "${summary[@]}"
  exit $status
}

for f in $TP/tp-check.mjs $TP/tp-bench.mjs $TP/tp-client.mjs $TP/tp-cuda-worker.mjs $TP/faulty-cuda-worker.mjs \
  .device/e2e/dist/flashserve.mjs .device/nccl-allreduce.mjs .device/node.xz; do
  [ -f "$f" ] || { echo "missing $f: run prepare-gpu-e2e.sh and prepare-gpu-suite.sh here, carry .device"; exit 2; }
done
xz -dc .device/node.xz > "$NODE" && chmod +x "$NODE"

# 1. Build.
t0=$(date +%s)
build_gpu_addons "$WORK" || { status=1; step "build both addons" "FAILED"; finish; }
step "build both addons (cuBLAS on)" "ok ($(( $(date +%s) - t0 )) s)"

# 2. NCCL alone: collectives' values, bus bandwidth, and a V2-Lite TP=2 step's collectives
#    (27 layers: 55 all-reduces of [B, 2048] bf16 + 1 all-gather of [B, 51200] bf16).
if want nccl; then
t0=$(date +%s)
OUT=$WORK/nccl bash packages/cuda/scripts/gpu-nccl.sh 2 --step 2048,51200,27 --batches 1,32,128 \
  > "$WORK/nccl.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1 && tail -n 20 "$WORK/nccl.log"
step "NCCL: collectives' values on both ranks" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($(( $(date +%s) - t0 )) s)"
# PyTorch's NCCL on the same sizes, same run: the reference bus bandwidth (nccl-tests' measure).
timeout 120 python3 packages/cuda/scripts/bench/nccl_torch_baseline.py 2 > "$WORK/nccl-torch.log" 2>&1
for mib in 8 64 256 1024; do
  bus=$(grep -o "{\"allReduce_mib\":$mib,[^}]*}" "$WORK/nccl/rank0.log" | grep -o '"bus_gbs":[0-9.]*' | cut -d: -f2)
  ref=$(grep -o "\"torch_allReduce_mib\": *$mib,[^}]*" "$WORK/nccl-torch.log" | grep -o '"bus_gbs": *[0-9.]*' | grep -o '[0-9.]*$')
  step "NCCL all-reduce $mib MiB bus bandwidth (PyTorch's NCCL)" "${bus:-?} GB/s (${ref:-?} GB/s)"
done
fi

# 3. The engine: TP=2 vs TP=1, and a killed rank.
if want check; then
t0=$(date +%s)
timeout 150 "$NODE" $TP/tp-check.mjs "$FIXTURE" "$TP/tp-cuda-worker.mjs" "$TP/faulty-cuda-worker.mjs" \
  > "$WORK/tp-check.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1 && tail -n 30 "$WORK/tp-check.log"
while IFS= read -r line; do
  step "$(echo "$line" | "$NODE" -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8"));process.stdout.write(r.check)')" \
    "$(echo "$line" | "$NODE" -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8"));process.stdout.write(`${r.ok?"ok":"FAILED"} ${r.value} (${r.limit})`)')"
done < <(grep '^{"check"' "$WORK/tp-check.log")
step "tp-check.mjs" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($(( $(date +%s) - t0 )) s)"
fi

# 4. The real server.
port=18700
start_server() {  # label, then serve flags; pid in $srv
  local label=$1; shift
  port=$((port + 1))
  "$NODE" .device/e2e/dist/flashserve.mjs serve --device cuda --attention-backend flashmla --model "$FIXTURE" \
    --skip-tokenizer-init --kv-cache-memory 256MiB --host 127.0.0.1 --port "$port" --log-level info "$@" \
    > "$WORK/server-$label.log" 2>&1 &
  srv=$!
  for _ in $(seq 1 240); do
    kill -0 $srv 2>/dev/null || break
    grep -q '"msg":"listening"' "$WORK/server-$label.log" && return 0
    sleep 0.25
  done
  echo "--- server $label did not start:"; tail -n 20 "$WORK/server-$label.log"
  kill -KILL $srv 2>/dev/null; wait $srv 2>/dev/null
  return 1
}
if want server; then
export FLASHSERVE_TP_WORKER_ENTRY=$ROOT/$TP/tp-cuda-worker.mjs
declare -A answer
for tp in 1 2; do
  if start_server "tp$tp" --tensor-parallel-size $tp; then
    answer[$tp]=$(timeout 60 "$NODE" $TP/tp-client.mjs greedy "http://127.0.0.1:$port" "$FIXTURE" 2>>"$WORK/client-tp$tp.log")
    echo "TP=$tp ${answer[$tp]}" >> "$WORK/client-tp$tp.log"
    stop_server
  else
    answer[$tp]="start failed"
  fi
done
same=$([ -n "${answer[1]}" ] && [ "${answer[1]}" = "${answer[2]}" ] && echo yes || echo no)
[ "$same" = yes ] || status=1
step "server TP=2 greedy = TP=1 (graphs on, openai client)" "$([ "$same" = yes ] && echo "ok ${answer[2]}" || echo "FAILED TP=1 ${answer[1]} TP=2 ${answer[2]}")"
export FLASHSERVE_TP_WORKER_ENTRY=$ROOT/$TP/faulty-cuda-worker.mjs
export FLASHSERVE_TEST_TP_FAULT=exit:1:4
if start_server kill --tensor-parallel-size 2; then
  t0=$(date +%s)
  timeout 60 "$NODE" $TP/tp-client.mjs kill "http://127.0.0.1:$port" "$FIXTURE" > "$WORK/client-kill.log" 2>&1
  krc=$?
  code=timeout
  for _ in $(seq 1 120); do kill -0 $srv 2>/dev/null || break; sleep 0.25; done
  if kill -0 $srv 2>/dev/null; then stop_server; else wait $srv; code=$?; fi
  ok=$([ $krc -eq 0 ] && [ "$code" = 1 ] && echo ok || echo FAILED)
  [ "$ok" = ok ] || status=1
  step "server: rank 1 killed mid-request -> 500, server exits 1" "$ok (client rc $krc, server exit $code, $(( $(date +%s) - t0 )) s)"
else
  status=1; step "server: rank 1 killed mid-request" "FAILED to start"
fi
unset FLASHSERVE_TEST_TP_FAULT FLASHSERVE_TP_WORKER_ENTRY
fi

# 5. Benchmark: TP=1 then TP=2, each in its own process. TP_BENCH_ARMS="NAME=VALUE ..." adds TP=2
#    runs under other NCCL settings (A/B), each with its own collectives-alone measurement.
bench() {  # tp, label, collectives log
  local tp=$1 label=$2
  t0=$(date +%s)
  timeout 200 "$NODE" $TP/tp-bench.mjs --tp "$tp" --worker "$TP/tp-cuda-worker.mjs" \
    --batches "${TP_BENCH_BATCHES:-1,32,128}" --steps "${TP_BENCH_STEPS:-60}" --collectives "$3" \
    > "$WORK/bench-$label.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1 && tail -n 20 "$WORK/bench-$label.log"
  step "tp-bench $label" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($(( $(date +%s) - t0 )) s)"
}
if want bench; then
  bench 1 tp1 "$WORK/nccl/rank0.log"
  bench 2 tp2 "$WORK/nccl/rank0.log"
  for arm in ${TP_BENCH_ARMS:-}; do
    (export "${arm?}"
     OUT=$WORK/nccl-$arm bash packages/cuda/scripts/gpu-nccl.sh 2 --step 2048,51200,27 --batches "${TP_BENCH_BATCHES:-1,32,128}" \
       > "$WORK/nccl-$arm.log" 2>&1
     bench 2 "tp2-$arm" "$WORK/nccl-$arm/rank0.log"
     printf '%s\n' "${summary[@]: -1}" > "$WORK/arm-$arm.summary")
    step "$(cut -c1-58 "$WORK/arm-$arm.summary" | sed 's/ *$//')" "$(cut -c60- "$WORK/arm-$arm.summary")"
  done
fi
echo 'run                tp batch   eager ms  step ms   tok/s  per-GPU GB  mem floor  coll alone  floor ms  x floor  coll share'
for f in "$WORK"/bench-*.log; do
  [ -f "$f" ] || continue
  label=$(basename "$f" .log); label=${label#bench-}
  grep -h '^TP=' "$f" >&2
  grep '^{"tp"' "$f" | "$NODE" -e '
for (const l of require("fs").readFileSync(0, "utf8").trim().split("\n")) {
  const r = JSON.parse(l);
  console.log(process.argv[1].padEnd(18) + [r.tp, r.batch, r.eager_step_ms, r.step_ms, r.tok_s, r.per_gpu_gb, r.mem_floor_ms, r.collectives_alone_ms, r.floor_ms, r.x_floor, r.collective_share].map(String).map((s, i) => s.padStart(i < 2 ? 3 : 9)).join(" "));
}' "$label"
done
grep -h '"step_collectives"' "$WORK/nccl/rank0.log"
finish
