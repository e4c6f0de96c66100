// A DeepSeek model split over N ranks, behind the engine's ordinary Model contract.
//
// Rank 0 is the engine's own thread; ranks 1..N-1 are worker threads (core/distributed/rank-threads.ts)
// that each build their own shard of the model (tensor-parallel.ts) from the same checkpoint. Per step:
//   engine -> forward(batch) on rank 0 -> the batch's arrays go to the workers through shared memory
//   (StepSender: no JSON, no message per step) -> every rank runs the same forward on its shard, in
//   lock-step through the process group's collectives -> rank 0 returns the full logits.
// The scheduler and the KV cache manager exist once, in the engine: block tables and slot mappings are
// decided there and every rank applies the same ones to its replicated latent cache.
//
// Failure: a worker that throws or exits, or a collective that times out, breaks the group. The
// forward in flight throws a FS_ERR_DISTRIBUTED_* error (the engine fails that step's requests with
// it), and every later forward throws FS_ERR_DISTRIBUTED_GROUP_BROKEN at once. `brokenReason` lets a
// server's /health report it; the fix is a restart (new workers, new caches).

import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type AttentionBackend,
  attentionBackends,
  CpuDevice,
  CpuProcessGroup,
  createShmGroupInit,
  createStepChannelInit,
  type DeepseekConfig,
  type Device,
  distributedConfigInvalid,
  distributedGroupBroken,
  type ForwardBatch,
  loadDeepseekConfig,
  type Model,
  type ModelInfo,
  type ProcessGroup,
  type RankHandlers,
  RankThreads,
  SafetensorsCheckpoint,
  type Tensor,
  type WeightSource,
} from '@flashserve/core';
import { DeepseekModel, loadDeepseekModel } from './model.js';
import {
  shardConfig,
  shardWeights,
  tensorParallelUnsupportedReasons,
  VocabParallelHooks,
} from './tensor-parallel.js';
import { DummyWeightSource } from './weights.js';

/** Where every rank reads its weights from (each rank reads and slices on its own). */
export type TensorParallelWeights =
  | { readonly kind: 'dir'; readonly dir: string }
  | { readonly kind: 'dummy'; readonly config: DeepseekConfig; readonly seed: number };

/** What every rank builds; structured-clonable, sent once to each worker at start. */
export interface TensorParallelPayload {
  readonly weights: TensorParallelWeights;
  readonly tensorParallelSize: number;
  readonly device: 'cpu' | 'cuda';
  /** Attention backend by registry name (a backend object cannot cross threads). */
  readonly backend: string;
  readonly name: string;
  readonly maxModelLen?: number;
}

export interface CreateTensorParallelModelOptions {
  /** A Hugging Face model directory, or a config with dummy weights (seeded). */
  readonly dir?: string;
  readonly config?: DeepseekConfig;
  readonly dummySeed?: number;
  readonly tensorParallelSize: number;
  readonly device?: 'cpu' | 'cuda';
  /** Registry name or a backend (its name is what the workers resolve); default "reference-mla". */
  readonly backend?: string | AttentionBackend;
  readonly name?: string;
  readonly maxModelLen?: number;
  /** Longest a rank waits in one collective before the group is declared broken (default 60 s). */
  readonly collectiveTimeoutMs?: number;
  /** The worker threads' module; defaults to the built tp-worker.js beside this file. */
  readonly workerEntry?: URL;
}

/** The engine-facing model; `close()` stops the workers. */
export interface ClosableModel extends Model {
  /** Why the model cannot run steps any more (a broken tensor-parallel group), or undefined. */
  readonly brokenReason: string | undefined;
  close(): Promise<void>;
}

function openWeights(w: TensorParallelWeights): {
  config: DeepseekConfig;
  source: WeightSource;
  close(): void;
} {
  if (w.kind === 'dummy')
    return { config: w.config, source: new DummyWeightSource(w.config, w.seed), close() {} };
  const checkpoint = new SafetensorsCheckpoint(w.dir);
  return { config: loadDeepseekConfig(w.dir), source: checkpoint, close: () => checkpoint.close() };
}

/** Builds rank `group.rank`'s shard of the model on `device`. Runs on every rank, rank 0 included. */
export function buildTensorParallelRank(
  p: TensorParallelPayload,
  group: ProcessGroup,
  device: Device,
): { readonly model: DeepseekModel; readonly hooks: VocabParallelHooks } {
  const { config, source, close } = openWeights(p.weights);
  try {
    const N = p.tensorParallelSize;
    const hooks = new VocabParallelHooks(source, config, group, device);
    const model = new DeepseekModel(shardConfig(config, N), shardWeights(source, group.rank, N), {
      device,
      backend: attentionBackends.get(p.backend),
      name: p.name,
      ...(p.maxModelLen === undefined ? {} : { maxModelLen: p.maxModelLen }),
      tensorParallel: hooks,
    });
    return { model, hooks };
  } finally {
    close();
  }
}

/** What a worker rank does with each command; the barrier makes a failed allocation visible to rank 0. */
export function tensorParallelRankHandlers(model: Model, group: ProcessGroup): RankHandlers {
  return {
    allocateKvCache(numBlocks, blockSize) {
      model.allocateKvCache(numBlocks, blockSize);
      group.barrier();
    },
    forward(batch) {
      model.device.release(model.forward(batch));
    },
  };
}

export class TensorParallelModel implements ClosableModel {
  readonly info: ModelInfo;
  readonly device: Device;
  readonly tensorParallelSize: number;
  readonly #local: DeepseekModel;
  readonly #hooks: VocabParallelHooks;
  readonly #group: ProcessGroup;
  readonly #threads: RankThreads;

  constructor(
    local: { model: DeepseekModel; hooks: VocabParallelHooks },
    group: ProcessGroup,
    threads: RankThreads,
  ) {
    this.#local = local.model;
    this.#hooks = local.hooks;
    this.#group = group;
    this.#threads = threads;
    this.info = local.model.info;
    this.device = local.model.device;
    this.tensorParallelSize = group.worldSize;
  }

  get brokenReason(): string | undefined {
    return this.#group.brokenReason;
  }

  /** Collectives rank 0 has run and the time it spent in them (ms, waits included). */
  collectiveStats(): { readonly collectives: number; readonly collectiveMs: number } {
    return { ...this.#hooks.stats };
  }

  /** Per rank: the latent cache is replicated, so every rank needs this many bytes per block. */
  kvCacheBytesPerBlock(blockSize: number): number {
    return this.#local.kvCacheBytesPerBlock(blockSize);
  }

  allocateKvCache(numBlocks: number, blockSize: number): void {
    this.#lockStep(() => {
      this.#threads.sender.send({ kind: 'allocate', numBlocks, blockSize });
      this.#local.allocateKvCache(numBlocks, blockSize);
      this.#group.barrier();
    });
  }

  forward(batch: ForwardBatch): Tensor {
    return this.#lockStep(() => {
      this.#threads.sender.send({ kind: 'forward', batch });
      return this.#local.forward(batch);
    });
  }

  async close(): Promise<void> {
    await this.#threads.shutdown();
    this.#group.destroy();
  }

  #lockStep<T>(f: () => T): T {
    const broken = this.#group.brokenReason;
    if (broken !== undefined) throw distributedGroupBroken(broken);
    try {
      return f();
    } catch (e) {
      // A failure of rank 0's own: the workers are blocked in a collective and must be released.
      if (this.#group.brokenReason === undefined) {
        this.#group.abort(`rank 0 failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      throw e;
    }
  }
}

class SingleRankModel implements ClosableModel {
  readonly info: ModelInfo;
  readonly device: Device;
  readonly brokenReason = undefined;
  readonly #m: DeepseekModel;

  constructor(m: DeepseekModel) {
    this.#m = m;
    this.info = m.info;
    this.device = m.device;
  }

  kvCacheBytesPerBlock(blockSize: number): number {
    return this.#m.kvCacheBytesPerBlock(blockSize);
  }

  allocateKvCache(numBlocks: number, blockSize: number): void {
    this.#m.allocateKvCache(numBlocks, blockSize);
  }

  forward(batch: ForwardBatch): Tensor {
    return this.#m.forward(batch);
  }

  async close(): Promise<void> {}
}

/**
 * The one entry point servers and benchmarks use: a DeepSeek model over `tensorParallelSize` ranks
 * (1 = the plain single-device model). Resolves once every rank has loaded its shard.
 */
export async function createTensorParallelModel(o: CreateTensorParallelModelOptions): Promise<ClosableModel> {
  const N = o.tensorParallelSize;
  const deviceKind = o.device ?? 'cpu';
  const backendName = typeof o.backend === 'string' ? o.backend : (o.backend?.name ?? 'reference-mla');
  if ((o.dir === undefined) === (o.config === undefined)) {
    throw distributedConfigInvalid('give exactly one of dir (a model directory) and config (dummy weights)');
  }
  const weights: TensorParallelWeights =
    o.dir !== undefined
      ? { kind: 'dir', dir: o.dir }
      : { kind: 'dummy', config: o.config!, seed: o.dummySeed ?? 0 };
  const config = weights.kind === 'dir' ? loadDeepseekConfig(weights.dir) : weights.config;
  const reasons = tensorParallelUnsupportedReasons(config, N);
  if (reasons.length > 0) throw distributedConfigInvalid(reasons.join('; '));
  if (deviceKind !== 'cpu') {
    // TODO(issue 11): CUDA ranks need a per-thread CUDA runtime in @flashserve/cuda (today one process
    // drives one GPU) and NcclProcessGroup as the rank's group; the sharding and step channel are ready.
    throw distributedConfigInvalid(
      'tensor parallelism runs on the CPU device only so far: CUDA ranks need a per-thread CUDA runtime and NcclProcessGroup (see docs/tensor-parallel.md)',
    );
  }
  const name = o.name ?? (o.dir !== undefined ? basename(o.dir) : 'deepseek');
  const device = new CpuDevice();
  if (N === 1) {
    const backend = typeof o.backend === 'object' ? o.backend : attentionBackends.get(backendName);
    const single =
      o.dir !== undefined
        ? loadDeepseekModel(o.dir, {
            device,
            backend,
            name,
            ...(o.maxModelLen === undefined ? {} : { maxModelLen: o.maxModelLen }),
          })
        : new DeepseekModel(config, new DummyWeightSource(config, o.dummySeed ?? 0), {
            device,
            backend,
            name,
            ...(o.maxModelLen === undefined ? {} : { maxModelLen: o.maxModelLen }),
          });
    return new SingleRankModel(single);
  }

  const entry = o.workerEntry ?? defaultWorkerEntry();
  if (entry.protocol === 'file:' && !existsSync(fileURLToPath(entry))) {
    throw distributedConfigInvalid(
      `the worker module ${fileURLToPath(entry)} does not exist (running from TypeScript sources? build @flashserve/models, or pass workerEntry)`,
    );
  }
  const payload: TensorParallelPayload = {
    weights,
    tensorParallelSize: N,
    device: deviceKind,
    backend: backendName,
    name,
    ...(o.maxModelLen === undefined ? {} : { maxModelLen: o.maxModelLen }),
  };
  const group = createShmGroupInit(
    N,
    o.collectiveTimeoutMs === undefined ? {} : { timeoutMs: o.collectiveTimeoutMs },
  );
  const threads = new RankThreads({ entry, group, channel: createStepChannelInit(), payload });
  const pg = new CpuProcessGroup(group, 0);
  try {
    // Rank 0 loads its shard on this thread while the workers load theirs.
    const local = buildTensorParallelRank(payload, pg, device);
    await threads.ready;
    return new TensorParallelModel(local, pg, threads);
  } catch (e) {
    await threads.shutdown();
    throw e;
  }
}

/** The built worker beside this module; when this module runs from its TypeScript sources (tests of
 * dependent packages), the package's built copy in dist/, since worker threads run JavaScript only. */
function defaultWorkerEntry(): URL {
  const beside = new URL('./tp-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  return new URL('../../dist/deepseek/tp-worker.js', import.meta.url);
}
