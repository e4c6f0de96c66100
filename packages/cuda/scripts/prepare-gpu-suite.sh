#!/usr/bin/env bash
# Run HERE (the dev machine, with node_modules) before a GPU run: puts into .device/ (ignored by git,
# carried to the GPU machine with carry=[".device"]) the Node-API headers and the esbuild bundles of
# the Node checks and the benchmark, since the GPU machine has no npm and no network.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
mkdir -p .device/napi
rm -rf .device/napi/node-api-headers .device/napi/node-addon-api
cp -r packages/cuda/node_modules/node-api-headers/include .device/napi/node-api-headers
mkdir -p .device/napi/node-addon-api
cp packages/cuda/node_modules/node-addon-api/*.h .device/napi/node-addon-api/
bundle() {
  npx esbuild "$1" --bundle --platform=node --format=esm --outfile="$2" '--external:*.node' \
    --conditions=flashserve-source --log-level=warning
}
bundle packages/cuda/scripts/gpu/main.ts .device/gpu-check.mjs
bundle packages/cuda/scripts/bench/decode-bench.ts .device/decode-bench.mjs
bundle packages/cuda/scripts/gpu/nccl-allreduce.ts .device/nccl-allreduce.mjs
ls -la .device
