#!/usr/bin/env bash
# Run HERE (the dev machine, with node_modules) before packages/server/scripts/gpu-e2e.sh runs on the
# GPU machine. Puts into .device/ (ignored by git, carried with carry=[".device"]):
#   napi/                      Node-API headers for the two addons' CMake builds;
#   e2e/dist/flashserve.mjs    the real `flashserve` CLI (packages/server/src/cli/main.ts), one ES module;
#   e2e/package.json           the server's package.json (the CLI reads its version from ../package.json);
#   e2e/client.mjs             the HTTP checks, through the official `openai` client;
#   e2e/model-check.mjs        the same model through DeepseekModel directly (full last-position logits,
#                              which the HTTP API does not return, and mixed-step equivalence);
#   e2e/graphs-check.mjs       the graphs mode's comparison (CUDA graphs vs eager) and tokens/s client;
#   tp/*.mjs                   gpu-tp.sh's checks, client and benchmark, the CUDA tensor-parallel worker
#                              module and its fault-injecting twin (worker threads load them by path).
# The addons are not bundled: the GPU script builds them and passes FLASHSERVE_CUDA_ADDON and
# FLASHSERVE_MLA_ADDON. The carried Node is .device/node.xz (put there once, as for the cuda suite).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
mkdir -p .device/napi .device/e2e/dist .device/tp
rm -rf .device/napi/node-api-headers .device/napi/node-addon-api
cp -r packages/cuda/node_modules/node-api-headers/include .device/napi/node-api-headers
mkdir -p .device/napi/node-addon-api
cp packages/cuda/node_modules/node-addon-api/*.h .device/napi/node-addon-api/
bundle() {
  node_modules/.bin/esbuild "$1" --bundle --platform=node --format=esm --target=node20 --outfile="$2" \
    '--external:*.node' --conditions=flashserve-source --log-level=warning \
    --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
}
bundle packages/server/src/cli/main.ts .device/e2e/dist/flashserve.mjs
cp packages/server/package.json .device/e2e/package.json
bundle packages/server/scripts/gpu-e2e/client.ts .device/e2e/client.mjs
bundle packages/server/scripts/gpu-e2e/model-check.ts .device/e2e/model-check.mjs
bundle packages/server/scripts/gpu-e2e/graphs-check.ts .device/e2e/graphs-check.mjs
bundle packages/server/src/runtime/tp-cuda-worker.ts .device/tp/tp-cuda-worker.mjs
for f in faulty-cuda-worker tp-check tp-bench tp-client; do
  bundle "packages/server/scripts/gpu-tp/$f.ts" ".device/tp/$f.mjs"
done
[ -f .device/node.xz ] || echo "WARNING: .device/node.xz is missing (an xz of a Linux x64 Node 20 binary)"
ls -la .device/e2e .device/e2e/dist .device/tp
