// Single-sequence decode speed of the CPU reference path: the ~10M-parameter TINY_DEEPSEEK_V3_CONFIG
// model with dummy weights on CpuDevice + reference-mla. Prints prefill and decode tokens/s.
//
//   npx pnpm@12.4.2 --filter @flashserve/models bench      (or: npm run bench in packages/models)

import { type CommonAttentionMetadata, CpuDevice, referenceMlaBackend } from '@flashserve/core';
import { createDeepseekModelFromWeights, DummyWeightSource, tinyDeepseekConfig } from '../src/index.js';

const config = tinyDeepseekConfig();

const weights = new DummyWeightSource(config, 1);
let params = 0;
for (const n of weights.names()) params += weights.info(n).shape.reduce((a, b) => a * b, 1);
const device = new CpuDevice();
const model = createDeepseekModelFromWeights(config, weights, {
  device,
  backend: referenceMlaBackend(),
  name: 'bench',
});
const blockSize = 16;
const numBlocks = 64;
model.allocateKvCache(numBlocks, blockSize);

const promptLen = Number(process.env['PROMPT_LEN'] ?? 32);
const decodeSteps = Number(process.env['DECODE_STEPS'] ?? 128);

function step(tokens: number[], start: number): Float32Array {
  const n = tokens.length;
  const end = start + n;
  const blocks = Math.ceil(end / blockSize);
  const positions = Int32Array.from({ length: n }, (_, i) => start + i);
  const md: CommonAttentionMetadata = {
    numReqs: 1,
    numTokens: n,
    queryStartLoc: Int32Array.from([0, n]),
    seqLens: Int32Array.from([end]),
    numComputedTokens: Int32Array.from([start]),
    positions,
    slotMapping: positions.slice(),
    blockTables: Int32Array.from({ length: blocks }, (_, i) => i),
    maxBlocksPerReq: blocks,
    blockSize,
    maxQueryLen: n,
    maxSeqLen: end,
  };
  return device.toHost(
    model.forward({
      tokenIds: Int32Array.from(tokens),
      attention: md,
      logitsIndices: Int32Array.from([n - 1]),
    }),
  ) as Float32Array;
}

function argmax(row: Float32Array): number {
  let b = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[b]!) b = i;
  return b;
}

const prompt = Array.from({ length: promptLen }, (_, i) => (i * 131 + 7) % config.vocabSize);
// Warm the JIT up with one untimed prefill and a few decode steps (the cache is simply overwritten).
let next = argmax(step(prompt, 0));
for (let i = 0; i < 8; i++) next = argmax(step([next], promptLen + i));
let t0 = performance.now();
next = argmax(step(prompt, 0));
const prefillMs = performance.now() - t0;
let pos = promptLen;
t0 = performance.now();
for (let i = 0; i < decodeSteps; i++) next = argmax(step([next], pos++));
const decodeMs = performance.now() - t0;

console.log(
  `model: ${(params / 1e6).toFixed(1)}M parameters (${config.numHiddenLayers} layers, hidden ${config.hiddenSize}, ${config.moe?.nRoutedExperts} experts top-${config.moe?.numExpertsPerTok}, vocab ${config.vocabSize})`,
);
console.log(
  `prefill: ${promptLen} tokens in ${prefillMs.toFixed(1)} ms (${((promptLen / prefillMs) * 1000).toFixed(1)} tok/s)`,
);
console.log(
  `decode:  ${decodeSteps} tokens in ${decodeMs.toFixed(1)} ms (${((decodeSteps / decodeMs) * 1000).toFixed(1)} tok/s, one sequence, context ${promptLen}..${pos})`,
);
