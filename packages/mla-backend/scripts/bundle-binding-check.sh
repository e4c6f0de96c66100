#!/usr/bin/env bash
# Bundles bench/binding-check.ts (and the workspace sources it imports) into one ES module for a GPU
# machine with Node but no node_modules: build/gpu-bundle/binding-check.mjs. The addons are found
# through FLASHSERVE_MLA_ADDON / FLASHSERVE_CUDA_ADDON at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
../../node_modules/.bin/esbuild bench/binding-check.ts --bundle --platform=node --format=esm --target=node20 \
  --conditions=flashserve-source --outfile=build/gpu-bundle/binding-check.mjs --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
echo "bundled build/gpu-bundle/binding-check.mjs"
