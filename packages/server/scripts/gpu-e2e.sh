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
# GPU_E2E_GRAPHS=1 (graphs mode) replaces steps 2-3: four servers on the fixture, flashmla and
# cuda-mla each with decode CUDA graphs (--no-enforce-eager) and with --enforce-eager, the same
# client checks, and graphs-check.mjs comparing each graphs server's completions and logprobs with its
# eager twin; then decode tokens/s through the server (graphs with and without async scheduling, and
# eager; flashmla, batch 1 and 32,
# 16-token prompts, 64 decode steps) on a DeepSeek-V2-Lite-shaped model with --load-format dummy; the
# tokens/s table is printed last.
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
# shellcheck source=lib/gpu-common.sh
source "$ROOT/packages/server/scripts/lib/gpu-common.sh"
NODE=/tmp/node
# GPU_E2E_CPU_DRY_RUN=1 tests this script on a machine without a GPU: no builds, the local node,
# the CPU device with the reference backend.
DRY=${GPU_E2E_CPU_DRY_RUN:-0}
export GPU_E2E_CPU_DRY_RUN=$DRY
GRAPHS=${GPU_E2E_GRAPHS:-0}
export GPU_E2E_GRAPHS=$GRAPHS
# label:backend:sampler[:graphs|eager] (gpu: CudaSampler, the CUDA default; host:
# FLASHSERVE_SAMPLER=host; graphs: --no-enforce-eager, eager: --enforce-eager, absent: the default)
RUNS="flashmla:flashmla:gpu cuda-mla:cuda-mla:gpu flashmla-host-sampler:flashmla:host"
[ "$GRAPHS" = 1 ] && RUNS="flashmla-graphs:flashmla:gpu:graphs flashmla-eager:flashmla:gpu:eager cuda-mla-graphs:cuda-mla:gpu:graphs cuda-mla-eager:cuda-mla:gpu:eager"
DEVICE=cuda
if [ "$DRY" = 1 ]; then
  NODE=$(command -v node); RUNS=reference-mla:reference-mla:host; DEVICE=cpu
  [ "$GRAPHS" = 1 ] && RUNS="reference-graphs:reference-mla:host:graphs reference-eager:reference-mla:host:eager"
fi
status=0
summary=()
step() { summary+=("$(printf '%-44s %s' "$1" "$2")"); }

for f in .device/e2e/dist/flashserve.mjs .device/e2e/client.mjs .device/e2e/model-check.mjs .device/e2e/graphs-check.mjs; do
  [ -f "$f" ] || { echo "missing $f: run packages/server/scripts/prepare-gpu-e2e.sh here and carry .device"; exit 2; }
done
if [ "$DRY" != 1 ]; then
echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
[ -f .device/node.xz ] || { echo "missing .device/node.xz (a Linux x64 Node 20, xz-compressed)"; exit 2; }
xz -dc .device/node.xz > "$NODE" && chmod +x "$NODE" || { echo "cannot unpack .device/node.xz"; exit 2; }
t0=$(date +%s)
if ! build_gpu_addons "$OUT"; then
  tar czf "$RESULTS/gpu-e2e-logs.tgz" -C "$OUT" . 2>/dev/null
  exit 1
fi
step "build both addons (cuBLAS on)" "ok ($(( $(date +%s) - t0 )) s)"
fi
echo "node $($NODE --version)"

# 2. The model directly (full logits, mixed steps); the graphs mode skips it (device time).
if [ "$GRAPHS" != 1 ]; then
t0=$(date +%s)
timeout 90 "$NODE" .device/e2e/model-check.mjs "$FIXTURE" > "$OUT/model-check.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1 && tail -n 30 "$OUT/model-check.log"
step "model-check (DeepseekModel, both backends)" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($(( $(date +%s) - t0 )) s)"
fi

# Starts `flashserve serve` in the background (pid in $srv) with its log in $OUT/server-<label>.log
# and waits up to $2 quarter-seconds for it to listen; returns 1 if it did not.
start_server() {
  local label=$1 waits=$2; shift 2
  FLASHSERVE_LOG_STEPS=1 "$NODE" .device/e2e/dist/flashserve.mjs serve "$@" --host 127.0.0.1 --port "$port" \
    --log-level info > "$OUT/server-$label.log" 2>&1 &
  srv=$!
  for _ in $(seq 1 "$waits"); do
    kill -0 $srv 2>/dev/null || break
    grep -q '"msg":"listening"' "$OUT/server-$label.log" && return 0
    sleep 0.25
  done
  echo "--- server ($label) did not start:"; tail -n 20 "$OUT/server-$label.log"
  kill $srv 2>/dev/null; wait $srv 2>/dev/null
  return 1
}
# Decode-only steps of a server log and how many of them ran through a CUDA graph.
graph_steps() {
  "$NODE" -e '
const steps = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter((l) => l.includes("\"engine step\"")).map((l) => JSON.parse(l));
const dec = steps.filter((s) => s.prefillTokens === 0);
console.log(`${dec.filter((s) => s.graph !== undefined).length}/${dec.length}`);' "$1"
}

# 3. The real server, once per backend and sampler.
port=18600
LABELS=""
for run in $RUNS; do
  IFS=: read -r label backend sampler mode <<< "$run"
  LABELS="$LABELS $label"
  port=$((port + 1))
  t0=$(date +%s)
  eager_flag=()
  [ "${mode:-}" = graphs ] && eager_flag=(--no-enforce-eager)
  [ "${mode:-}" = eager ] && eager_flag=(--enforce-eager)
  export FLASHSERVE_SAMPLER=$sampler
  if ! start_server "$label" 160 --device "$DEVICE" --attention-backend "$backend" \
    --model "$FIXTURE" --skip-tokenizer-init --kv-cache-memory 256MiB --max-num-batched-tokens 64 "${eager_flag[@]}"; then
    step "server $label" "FAILED to start"
    status=1
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
  stop_server
  errs=$(grep -c '"level":[56]0' "$OUT/server-$label.log")
  # Steps of this server that ran prefill tokens and decode tokens together (FLASHSERVE_LOG_STEPS).
  "$NODE" -e '
const [log, label] = process.argv.slice(1);
const steps = require("fs").readFileSync(log, "utf8").split("\n").filter((l) => l.includes("\"engine step\"")).map((l) => JSON.parse(l));
const mixed = steps.filter((s) => s.prefillTokens > 0 && s.decodeTokens > 0);
const maxPrefill = Math.max(0, ...steps.map((s) => s.prefillTokens));
console.log(JSON.stringify([{ check: `[${label}] server steps mixing prefill and decode (max prefill/step ${maxPrefill})`,
  value: `${mixed.length}/${steps.length}`, limit: ">=1", ok: mixed.length >= 1 }]));' "$OUT/server-$label.log" "$label" > "$OUT/steps-$label.json"
  # Graphs mode: decode-only steps that replayed a graph (none with --enforce-eager or on the CPU).
  if [ -n "${mode:-}" ]; then
    gs=$(graph_steps "$OUT/server-$label.log")
    want=">=1"; { [ "$mode" = eager ] || [ "$DEVICE" = cpu ]; } && want="0"
    "$NODE" -e '
const [gs, label, want, f] = process.argv.slice(1);
const n = Number(gs.split("/")[0]);
const rows = JSON.parse(require("fs").readFileSync(f, "utf8"));
rows.push({ check: `[${label}] decode-only steps run through a CUDA graph`, value: gs, limit: want,
  ok: want === "0" ? n === 0 : n >= 1 });
require("fs").writeFileSync(f, JSON.stringify(rows));' "$gs" "$label" "$want" "$OUT/steps-$label.json"
  fi
  step "server + openai client, $label" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($(( $(date +%s) - t0 )) s, $errs error lines in its log)"
done

# The server's own decode step at each batch size of a tokens/s run: the mean interval between
# consecutive logged decode-only steps of exactly that many sequences (FLASHSERVE_LOG_STEPS, ms
# timestamps). Unlike the client's figure it does not depend on how the requests trickled in.
step_intervals() {
  "$NODE" -e '
const steps = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter((l) => l.includes("\"engine step\"")).map((l) => JSON.parse(l));
const out = [];
for (const b of process.argv[2].split(",").map(Number)) {
  let sum = 0, n = 0;
  for (let i = 1; i < steps.length; i++) {
    const [p, s] = [steps[i - 1], steps[i]];
    if (p.prefillTokens === 0 && s.prefillTokens === 0 && p.seqs === b && s.seqs === b) { sum += s.time - p.time; n++; }
  }
  out.push(`${b}=${n > 0 ? (sum / n).toFixed(2) : "-"}`);
}
console.log(out.join(","));' "$1" "$2"
}

# Graphs mode: each graphs server's completions against its eager twin's, then decode tokens/s.
TPUT_LABELS=""
if [ "$GRAPHS" = 1 ]; then
  for run in $RUNS; do
    IFS=: read -r label _ _ mode <<< "$run"
    [ "$mode" = graphs ] || continue
    twin=${label%-graphs}-eager
    LABELS="$LABELS $label:graphs"
    "$NODE" .device/e2e/graphs-check.mjs compare "$label" "$twin" > "$OUT/graphs-$label.log" 2>&1 || status=1
    tail -n 4 "$OUT/graphs-$label.log"
    step "graphs vs eager, $label" "$(grep -q 'FAIL' "$OUT/graphs-$label.log" && echo FAILED || echo ok)"
  done
  # A model of DeepSeek-V2-Lite's shapes (packages/cuda/scripts/bench/decode-bench.ts) with dummy
  # weights; on the CPU dry run the fixture instead (V2-Lite on the CPU would take hours).
  V2L=$(mktemp -d /tmp/v2-lite.XXXXXX)
  cat > "$V2L/config.json" <<'JSON'
{"architectures":["DeepseekV2ForCausalLM"],"model_type":"deepseek_v2","vocab_size":102400,"hidden_size":2048,
 "intermediate_size":10944,"moe_intermediate_size":1408,"num_hidden_layers":27,"num_attention_heads":16,
 "num_key_value_heads":16,"n_shared_experts":2,"n_routed_experts":64,"num_experts_per_tok":6,
 "routed_scaling_factor":1.0,"topk_method":"greedy","n_group":1,"topk_group":1,"norm_topk_prob":false,
 "scoring_func":"softmax","first_k_dense_replace":1,"moe_layer_freq":1,"kv_lora_rank":512,"q_lora_rank":null,
 "qk_nope_head_dim":128,"qk_rope_head_dim":64,"v_head_dim":128,"hidden_act":"silu","max_position_embeddings":163840,
 "rms_norm_eps":1e-6,"rope_theta":10000,"rope_scaling":{"type":"yarn","factor":40,"original_max_position_embeddings":4096,
 "beta_fast":32,"beta_slow":1,"mscale":0.707,"mscale_all_dim":0.707},"attention_bias":false,
 "tie_word_embeddings":false,"bos_token_id":100000,"eos_token_id":100001}
JSON
  TPUT_MODEL=(--model "$V2L" --load-format dummy --attention-backend flashmla --kv-cache-memory 4GiB)
  TPUT_BATCHES=1,32; TPUT_TOKENS=64; TPUT_WAITS=480
  if [ "$DRY" = 1 ]; then
    TPUT_MODEL=(--model "$FIXTURE" --attention-backend reference-mla --kv-cache-memory 256MiB)
    TPUT_BATCHES=1,4; TPUT_TOKENS=8; TPUT_WAITS=160
  fi
  unset FLASHSERVE_SAMPLER
  # graphs: the defaults (decode graphs, async scheduling); sync: graphs with --no-async-scheduling;
  # eager: --enforce-eager (async scheduling on).
  for m in graphs sync eager; do
    label=tput-$m
    port=$((port + 1))
    t0=$(date +%s)
    case $m in
      graphs) flags=(--no-enforce-eager) ;;
      sync) flags=(--no-enforce-eager --no-async-scheduling) ;;
      *) flags=(--enforce-eager) ;;
    esac
    if ! start_server "$label" "$TPUT_WAITS" --device "$DEVICE" "${TPUT_MODEL[@]}" --skip-tokenizer-init \
      --max-model-len 1024 --max-num-seqs 32 "${flags[@]}"; then
      step "tokens/s, $m" "FAILED to start"; status=1; continue
    fi
    grep '"msg":"model loaded"' "$OUT/server-$label.log" | head -c 400; echo
    timeout 120 "$NODE" .device/e2e/graphs-check.mjs bench "http://127.0.0.1:$port/v1" "$m" "$TPUT_BATCHES" "$TPUT_TOKENS" \
      > "$OUT/tput-$m.log" 2>&1
    rc=$?
    cat "$OUT/tput-$m.log"
    stop_server
    [ $rc -ne 0 ] && status=1
    TPUT_LABELS="$TPUT_LABELS $m:$(graph_steps "$OUT/server-$label.log"):$(step_intervals "$OUT/server-$label.log" "$TPUT_BATCHES")"
    step "tokens/s through the server, $m" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($(( $(date +%s) - t0 )) s)"
  done
fi

# 4. Every check in one table, last.
"$NODE" -e '
const fs = require("fs"), path = require("path");
const out = process.env.OUT;
const files = [...(process.env.GPU_E2E_GRAPHS === "1" ? [] : ["model-check.json"]), ...process.argv.slice(1).flatMap((b) => b.endsWith(":graphs") ? [`graphs-${b.slice(0, -7)}.json`] : [`client-${b}.json`, `steps-${b}.json`])];
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
# Graphs mode: decode tokens/s through the server, graphs on vs off, last.
if [ -n "$TPUT_LABELS" ]; then
  "$NODE" -e '
const fs = require("fs"), path = require("path");
const runs = process.argv.slice(1).map((a) => a.split(":"));
const got = Object.fromEntries(runs.map(([m]) => {
  const f = path.join(process.env.OUT, `tput-${m}.json`);
  return [m, fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, "utf8")) : []];
}));
console.log("\n=== decode through the server (flashserve serve, greedy, ignore_eos, 16-token prompts) ===");
console.log("graphs: the defaults (graphs + async scheduling); sync: graphs, --no-async-scheduling; eager: --enforce-eager");
console.log("batch   graphs ms/step  tok/s     sync ms/step  tok/s    eager ms/step  tok/s   graphs/sync  graphs/eager");
const batches = [...new Set(Object.values(got).flat().map((r) => r.batch))];
for (const b of batches) {
  const [g, s, e] = ["graphs", "sync", "eager"].map((m) => got[m]?.find((r) => r.batch === b));
  const c = (r, k) => (r ? String(r[k]) : "-");
  const x = (a, z) => (a && z ? (a.tok_s / z.tok_s).toFixed(2) + "x" : "-");
  console.log(`${String(b).padStart(5)} ${c(g, "ms_per_step").padStart(16)} ${c(g, "tok_s").padStart(6)} ${c(s, "ms_per_step").padStart(16)} ${c(s, "tok_s").padStart(6)} ${c(e, "ms_per_step").padStart(16)} ${c(e, "tok_s").padStart(6)} ${x(g, s).padStart(12)} ${x(g, e).padStart(13)}`);
}
for (const [m, gs] of runs) console.log(`decode-only steps through a graph (${m} server): ${gs}`);
for (const [m, , iv] of runs) console.log(`mean interval between full-batch decode steps in the ${m} server step log (batch=ms): ${iv}`);' $TPUT_LABELS
fi
echo "gpu-e2e: $([ $status -eq 0 ] && echo 'ALL OK' || echo FAILED)"
exit $status
