#!/usr/bin/env bash
# Issue 8's correctness bar through the real server, ON THE GPU MACHINE, from the repository root:
#   bash packages/server/scripts/gpu-e2e.sh            (carry=[".device"])
# after packages/server/scripts/prepare-gpu-e2e.sh ran here (bundles + Node-API headers in .device/,
# and .device/node.xz, a Linux x64 Node 20). Steps:
#   1. unpacks the carried Node; builds both addons with CMake (cuda with cuBLAS, mla-backend);
#   2. model-check.mjs: DeepseekModel on CudaDevice with flashmla and cuda-mla: full last-position
#      logits vs transformers (the HTTP API returns at most 20 logprobs), mixed prefill/decode steps
#      vs separate steps and vs the CPU fp32 reference, pieces of 1 vs 64 query tokens;
#   3. three servers in turn: flashmla and cuda-mla with the GPU sampler (CUDA's default), and
#      flashmla with the host sampler (FLASHSERVE_SAMPLER=host): each starts the bundled `flashserve
#      serve --device cuda --attention-backend <b>` on the GPU-shaped fixture on 127.0.0.1, with a
#      token budget of 64 per step so long prompts are prefilled in chunks beside other requests'
#      decodes, and client.mjs queries it through the official openai client;
#   4. prints one table of every check last; logs and JSON packed in $OUT/gpu-e2e-logs.tgz.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
# Logs and JSON are written to a work folder, then packed into ONE file under $OUT (the GPU
# machine returns at most 8 files): $OUT/gpu-e2e-logs.tgz.
RESULTS=${OUT:-/tmp/gpu-e2e}
mkdir -p "$RESULTS"
OUT=$(mktemp -d /tmp/gpu-e2e-logs.XXXXXX)
export OUT
FIXTURE=$ROOT/packages/models/test/fixtures/gpu-shaped-576-bf16
NAPI="$ROOT/.device/napi/node-api-headers;$ROOT/.device/napi/node-addon-api"
CUDA_BUILD=/tmp/flashserve-cuda-build
MLA_BUILD=/tmp/flashserve-mla-build
NODE=/tmp/node
# GPU_E2E_CPU_DRY_RUN=1 tests this script on a machine without a GPU: no builds, the local node,
# the CPU device with the reference backend.
DRY=${GPU_E2E_CPU_DRY_RUN:-0}
export GPU_E2E_CPU_DRY_RUN=$DRY
# label:backend:sampler (gpu: CudaSampler, the CUDA default; host: FLASHSERVE_SAMPLER=host)
RUNS="flashmla:flashmla:gpu cuda-mla:cuda-mla:gpu flashmla-host-sampler:flashmla:host"
DEVICE=cuda
if [ "$DRY" = 1 ]; then NODE=$(command -v node); RUNS=reference-mla:reference-mla:host; DEVICE=cpu; fi
status=0
summary=()
step() { summary+=("$(printf '%-44s %s' "$1" "$2")"); }

for f in .device/e2e/dist/flashserve.mjs .device/e2e/client.mjs .device/e2e/model-check.mjs; do
  [ -f "$f" ] || { echo "missing $f: run packages/server/scripts/prepare-gpu-e2e.sh here and carry .device"; exit 2; }
done
if [ "$DRY" != 1 ]; then
echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
[ -f .device/node.xz ] || { echo "missing .device/node.xz (a Linux x64 Node 20, xz-compressed)"; exit 2; }
xz -dc .device/node.xz > "$NODE" && chmod +x "$NODE" || { echo "cannot unpack .device/node.xz"; exit 2; }
t0=$(date +%s)
(cmake -S packages/cuda -B "$CUDA_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHSERVE_WITH_CUBLAS=ON \
  -DFLASHSERVE_SM90_ONLY=ON "-DNODE_API_INCLUDE_DIRS=$NAPI" && cmake --build "$CUDA_BUILD" -j "$(nproc)") \
  > "$OUT/cuda-build.log" 2>&1 &
cuda_pid=$!
(cmake -S packages/mla-backend -B "$MLA_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DNODE_API_INCLUDE_DIRS=$NAPI" \
  && cmake --build "$MLA_BUILD" -j "$(nproc)") > "$OUT/mla-build.log" 2>&1 &
mla_pid=$!
wait $cuda_pid; cuda_rc=$?
wait $mla_pid; mla_rc=$?
if [ $cuda_rc -ne 0 ] || [ $mla_rc -ne 0 ]; then
  grep -hE "error|Error" "$OUT/cuda-build.log" "$OUT/mla-build.log" | head -40
  echo "build FAILED (cuda rc=$cuda_rc, mla rc=$mla_rc)"
  tar czf "$RESULTS/gpu-e2e-logs.tgz" -C "$OUT" . 2>/dev/null
  exit 1
fi
step "build both addons (cuBLAS on)" "ok ($(( $(date +%s) - t0 )) s)"
export FLASHSERVE_CUDA_ADDON=$CUDA_BUILD/Release/flashserve_cuda.node
export FLASHSERVE_MLA_ADDON=$MLA_BUILD/Release/flashserve_mla.node
fi
echo "node $($NODE --version)"

# 2. The model directly (full logits, mixed steps).
t0=$(date +%s)
timeout 90 "$NODE" .device/e2e/model-check.mjs "$FIXTURE" > "$OUT/model-check.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1 && tail -n 30 "$OUT/model-check.log"
step "model-check (DeepseekModel, both backends)" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($(( $(date +%s) - t0 )) s)"

# 3. The real server, once per backend and sampler.
port=18600
LABELS=""
for run in $RUNS; do
  IFS=: read -r label backend sampler <<< "$run"
  LABELS="$LABELS $label"
  port=$((port + 1))
  t0=$(date +%s)
  FLASHSERVE_LOG_STEPS=1 FLASHSERVE_SAMPLER=$sampler "$NODE" .device/e2e/dist/flashserve.mjs serve --device "$DEVICE" --attention-backend "$backend" --model "$FIXTURE" \
    --skip-tokenizer-init --host 127.0.0.1 --port "$port" --kv-cache-memory 256MiB \
    --max-num-batched-tokens 64 --log-level info > "$OUT/server-$label.log" 2>&1 &
  srv=$!
  ready=0
  for _ in $(seq 1 160); do
    kill -0 $srv 2>/dev/null || break
    grep -q '"msg":"listening"' "$OUT/server-$label.log" && { ready=1; break; }
    sleep 0.25
  done
  if [ $ready -eq 0 ]; then
    echo "--- server ($label) did not start:"; tail -n 20 "$OUT/server-$label.log"
    step "server $label" "FAILED to start"
    status=1
    kill $srv 2>/dev/null; wait $srv 2>/dev/null
    continue
  fi
  grep '"msg":"model loaded"' "$OUT/server-$label.log" | head -c 600; echo
  timeout 60 "$NODE" .device/e2e/client.mjs "http://127.0.0.1:$port/v1" "$FIXTURE" "$label" > "$OUT/client-$label.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    status=1
    tail -n 30 "$OUT/client-$label.log"
    echo "--- server ($label) log, errors:"; grep -E '"level":(40|50|60)' "$OUT/server-$label.log" | tail -n 6 | cut -c1-600
  fi
  kill -TERM $srv 2>/dev/null
  for _ in $(seq 1 40); do kill -0 $srv 2>/dev/null || break; sleep 0.25; done
  kill -KILL $srv 2>/dev/null
  wait $srv 2>/dev/null
  errs=$(grep -c '"level":[56]0' "$OUT/server-$label.log")
  # Steps of this server that ran prefill tokens and decode tokens together (FLASHSERVE_LOG_STEPS).
  "$NODE" -e '
const [log, label] = process.argv.slice(1);
const steps = require("fs").readFileSync(log, "utf8").split("\n").filter((l) => l.includes("\"engine step\"")).map((l) => JSON.parse(l));
const mixed = steps.filter((s) => s.prefillTokens > 0 && s.decodeTokens > 0);
const maxPrefill = Math.max(0, ...steps.map((s) => s.prefillTokens));
console.log(JSON.stringify([{ check: `[${label}] server steps mixing prefill and decode (max prefill/step ${maxPrefill})`,
  value: `${mixed.length}/${steps.length}`, limit: ">=1", ok: mixed.length >= 1 }]));' "$OUT/server-$label.log" "$label" > "$OUT/steps-$label.json"
  step "server + openai client, $label" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($(( $(date +%s) - t0 )) s, $errs error lines in its log)"
done

# 4. Every check in one table, last.
"$NODE" -e '
const fs = require("fs"), path = require("path");
const out = process.env.OUT;
const files = ["model-check.json", ...process.argv.slice(1).flatMap((b) => [`client-${b}.json`, `steps-${b}.json`])];
console.log("\n=== gpu-e2e: every check ===");
console.log(`${"check".padEnd(78)} ${"value".padStart(9)} ${"limit".padStart(8)}  ok`);
for (const f of files) {
  const p = path.join(out, f);
  if (!fs.existsSync(p)) { console.log(`(${f} missing)`); continue; }
  for (const r of JSON.parse(fs.readFileSync(p, "utf8")))
    console.log(`${r.check.padEnd(78).slice(0, 78)} ${r.value.padStart(9)} ${r.limit.padStart(8)}  ${r.ok ? "ok" : "FAIL"}`);
}' $LABELS
tar czf "$RESULTS/gpu-e2e-logs.tgz" -C "$OUT" . 2>/dev/null
echo
printf '%s\n' "${summary[@]}"
echo "gpu-e2e: $([ $status -eq 0 ] && echo 'ALL OK' || echo FAILED)"
exit $status
