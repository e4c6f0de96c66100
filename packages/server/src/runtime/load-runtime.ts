// From a validated ServeConfig to a running engine: pick the device (CUDA must be available when
// asked for, else fail with the addon's reason), find the model directory (the embedded model is
// materialised first), resolve the attention backend, load weights (from safetensors, or dummy ones of
// the config's shapes), load the tokenizer, and size the KV cache.
//
// NOTE: the embedded model goes through exactly this path too: it is a directory on disk like any
// downloaded checkpoint.

import { existsSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  Engine,
  type GenerationDefaults,
  loadDeepseekConfig,
  loadGenerationConfig,
  loadHfTokenizer,
  type Model,
  SafetensorsCheckpoint,
  type Tokenizer,
  type WeightSource,
} from '@flashserve/core';
import { decodeGraphLadder } from '@flashserve/cuda';
import {
  createDeepseekModelFromWeights,
  createTensorParallelModel,
  DummyWeightSource,
  deepseekWeightManifest,
  mlaSpec,
} from '@flashserve/models';
import type { ServeConfig } from '../config.js';
import { defaultCacheDir, ensureEmbeddedModel } from '../embedded-model/materialize.js';
import type { ServingEngine } from '../engine-port.js';
import { configModel } from '../errors.js';
import type { SamplingDefaults } from '../openai/sampling.js';
import { cudaRankRuntime } from './cuda-ranks.js';
import { selectDevice } from './device.js';
import { ProgressWeightSource } from './progress-weights.js';
import { resolveAttentionBackend } from './register-backends.js';

export interface Runtime {
  readonly engine: ServingEngine;
  readonly tokenizer: Tokenizer | undefined;
  readonly modelName: string;
  readonly maxModelLen: number;
  readonly vocabSize: number;
  /** Sampling defaults for fields a request leaves out. */
  readonly samplingDefaults: SamplingDefaults;
  /** What was chosen, for the startup log. */
  readonly summary: Record<string, unknown>;
  /** Releases what outlives the engine (tensor-parallel worker threads). */
  close(): Promise<void>;
  /** Why the model can no longer run steps (a tensor-parallel group whose rank died), or undefined. */
  brokenReason(): string | undefined;
}

export interface RuntimeHooks {
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Progress of a named stage, 0..1 (weights generation, weights loading). */
  readonly onProgress?: (stage: string, fraction: number) => void;
}

function modelDirectory(config: ServeConfig, env: NodeJS.ProcessEnv, hooks: RuntimeHooks): string {
  if (config.model !== undefined) {
    if (!existsSync(config.model) || !statSync(config.model).isDirectory()) {
      throw configModel(config.model, 'not a directory (expected a Hugging Face model directory)');
    }
    return config.model;
  }
  const cacheDir = defaultCacheDir(env);
  hooks.log.info(
    { cacheDir, seed: config.seed },
    'no --model: serving the embedded model (weights generated on first start)',
  );
  return ensureEmbeddedModel({
    cacheDir,
    seed: config.seed,
    onProgress: (f) => hooks.onProgress?.('generating embedded model weights', f),
  });
}

export async function loadRuntime(
  config: ServeConfig,
  env: NodeJS.ProcessEnv,
  hooks: RuntimeHooks,
): Promise<Runtime> {
  const selected = selectDevice(config, env);
  const device = selected.device;
  const dir = modelDirectory(config, env, hooks);
  const modelConfig = loadDeepseekConfig(dir);
  const maxModelLen = Math.min(
    config.maxModelLen ?? modelConfig.maxPositionEmbeddings,
    modelConfig.maxPositionEmbeddings,
  );
  if (config.maxModelLen !== undefined && config.maxModelLen > modelConfig.maxPositionEmbeddings) {
    throw configModel(
      dir,
      `--max-model-len ${config.maxModelLen} exceeds the model's ${modelConfig.maxPositionEmbeddings}`,
    );
  }
  const spec = mlaSpec(modelConfig);
  const selection = {
    device,
    model: spec,
    ...(config.blockSize === undefined ? {} : { blockSize: config.blockSize }),
  };
  const backend = resolveAttentionBackend(config.attentionBackend, selection);
  const layout = backend.cacheLayout(selection);
  const name = config.servedModelName ?? dir.split(/[\\/]/).filter(Boolean).pop() ?? 'model';
  let model: Model;
  let close = async (): Promise<void> => {};
  let brokenReason = (): string | undefined => undefined;
  if (config.tensorParallelSize > 1) {
    // Each rank reads its own slices of the checkpoint (or generates them from the seed). On CUDA,
    // rank 0 keeps the device made above (GPU 0) and ranks 1..N-1 take GPUs 1..N-1.
    const cuda = config.device === 'cuda';
    const workerEntry = tensorParallelWorkerEntry(env, cuda);
    const tp = await createTensorParallelModel({
      ...(config.loadFormat === 'dummy' ? { config: modelConfig, dummySeed: config.seed } : { dir }),
      tensorParallelSize: config.tensorParallelSize,
      ...(cuda
        ? {
            rankRuntime: cudaRankRuntime(config.loadFormat === 'dummy' ? { dummySeed: config.seed } : {}),
            device,
          }
        : {}),
      ...(workerEntry === undefined ? {} : { workerEntry }),
      backend,
      name,
      maxModelLen,
    });
    model = tp;
    close = () => tp.close();
    brokenReason = () => tp.brokenReason;
  } else {
    const source: WeightSource =
      config.loadFormat === 'dummy'
        ? (selected.dummyWeights(deepseekWeightManifest(modelConfig)) ??
          new DummyWeightSource(modelConfig, config.seed))
        : new SafetensorsCheckpoint(dir);
    try {
      const withProgress = new ProgressWeightSource(source, (f) => hooks.onProgress?.('loading weights', f));
      model = createDeepseekModelFromWeights(modelConfig, withProgress, {
        device,
        backend,
        name,
        maxModelLen,
      });
    } finally {
      if (source instanceof SafetensorsCheckpoint) source.close();
    }
  }
  let tokenizer: Tokenizer | undefined;
  const generation = loadGenerationConfig(dir);
  if (!config.skipTokenizerInit) {
    tokenizer = loadHfTokenizer(dir, { extraEosTokenIds: generation.eosTokenIds });
  }
  const kvCacheMemoryBytes = selected.kvCacheBytes();
  // Decode steps through CUDA graphs (padded to a ladder of batch sizes) on CUDA unless --enforce-eager
  // (under tensor parallelism every rank captures and replays its own graph of each size, collectives
  // included); the CPU always runs eagerly.
  const graphSizes =
    config.enforceEager || model.device.graph === undefined
      ? []
      : decodeGraphLadder(config.maxNumSeqs, Math.ceil(maxModelLen / layout.blockSize));
  const engine = new Engine({
    model,
    ...(tokenizer === undefined ? {} : { tokenizer }),
    ...(selected.sampler === undefined ? {} : { sampler: selected.sampler }),
    blockSize: layout.blockSize,
    kvCacheMemoryBytes,
    maxNumSeqs: config.maxNumSeqs,
    maxNumBatchedTokens: Math.max(config.maxNumBatchedTokens, config.maxNumSeqs),
    maxModelLen,
    maxWaitingRequests: config.maxWaitingRequests,
    enablePrefixCaching: config.enablePrefixCaching,
    ...(graphSizes.length === 0 ? {} : { decodeGraphBatchSizes: graphSizes }),
    // Unset: where the device computes asynchronously (CUDA); a CPU forward is done when it returns.
    asyncScheduling: config.asyncScheduling ?? config.device === 'cuda',
  });
  if (config.asyncScheduling === true && !engine.asyncScheduling) {
    hooks.log.warn(
      { tensorParallelSize: config.tensorParallelSize },
      'async scheduling was asked for but this model cannot take its token ids from the device (tensor parallelism); steps run synchronously',
    );
  }
  engine.events.on('graphFallback', ({ batchSize, error }) =>
    hooks.log.info(
      { batchSize, error: error.message },
      'decode graph failed to capture or replay; steps of this size run eagerly',
    ),
  );
  // FLASHSERVE_LOG_STEPS=1: one log line per engine step (its prefill and decode tokens), so a run
  // can show that prefill chunks and decodes shared steps (gpu-e2e.sh counts them).
  if (env.FLASHSERVE_LOG_STEPS === '1') {
    engine.events.on('step', (s) =>
      hooks.log.info(
        {
          prefillTokens: s.numPrefillTokens,
          decodeTokens: s.numDecodeTokens,
          seqs: s.numScheduledSeqs,
          ...(s.graphBatchSize === undefined ? {} : { graph: s.graphBatchSize }),
        },
        'engine step',
      ),
    );
  }
  const samplingDefaults = config.generationConfig === 'auto' ? samplingDefaultsOf(generation) : {};
  const stats = engine.stats();
  return {
    engine,
    tokenizer,
    modelName: name,
    maxModelLen,
    vocabSize: modelConfig.vocabSize,
    samplingDefaults,
    close,
    brokenReason,
    summary: {
      dir,
      tensorParallelSize: config.tensorParallelSize,
      device: device.info.name,
      backend: backend.name,
      sampler: selected.sampler === undefined ? 'host' : 'gpu',
      blockSize: layout.blockSize,
      kvCacheBlocks: stats.numTotalBlocks,
      maxModelLen,
      cudaGraphs: graphSizes.length === 0 ? 'off' : graphSizes.join(','),
      asyncScheduling: engine.asyncScheduling ? 'on' : 'off',
      loadFormat: config.loadFormat,
      tokenizer: tokenizer === undefined ? 'skipped' : 'loaded',
      samplingDefaults,
    },
  };
}

/** The worker threads' module: FLASHSERVE_TP_WORKER_ENTRY (a file path or URL; tests inject faults
 * through it), else the CUDA one beside this file for GPUs, else the models package's CPU one. */
function tensorParallelWorkerEntry(env: NodeJS.ProcessEnv, cuda: boolean): URL | undefined {
  const given = env.FLASHSERVE_TP_WORKER_ENTRY;
  if (given !== undefined && given !== '') {
    return given.includes('://') ? new URL(given) : pathToFileURL(given);
  }
  if (!cuda) return undefined;
  const beside = new URL('./tp-cuda-worker.js', import.meta.url);
  // From the TypeScript sources (tests), the built copy: worker threads run JavaScript only.
  return existsSync(fileURLToPath(beside))
    ? beside
    : new URL('../../dist/runtime/tp-cuda-worker.js', import.meta.url);
}

/** vLLM's reading of generation_config.json: do_sample false means greedy whatever else it says. */
function samplingDefaultsOf(g: GenerationDefaults): SamplingDefaults {
  const out: { -readonly [K in keyof SamplingDefaults]: SamplingDefaults[K] } = {};
  if (g.doSample === false) out.temperature = 0;
  else if (g.temperature !== undefined) out.temperature = g.temperature;
  if (g.topP !== undefined) out.topP = g.topP;
  if (g.topK !== undefined) out.topK = g.topK;
  if (g.repetitionPenalty !== undefined) out.repetitionPenalty = g.repetitionPenalty;
  return out;
}
