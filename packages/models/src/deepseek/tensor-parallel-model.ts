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
  runRankThreadEntry,
  SafetensorsCheckpoint,
  ShmAbortFlag,
  type ShmGroupInit,
  serveSteps,
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
  /** What RankRuntime.prepare made on rank 0 (an NCCL unique id), for every rank's join. */
  readonly prepared: unknown;
}

/**
 * How a rank gets its device and its process group, on its own thread. The CPU one (CpuDevice and
 * shared-memory collectives) is built in; @flashserve/server supplies the CUDA one (a CudaDevice per
 * GPU and NcclProcessGroup), which this package cannot import. Rank 0 and the worker module
 * (runTensorParallelWorker) must use the same runtime.
 */
export interface RankRuntime {
  readonly device: 'cpu' | 'cuda';
  /** On rank 0, before the workers start: what every rank needs to join (structured-clonable). */
  prepare(worldSize: number): unknown;
  /** On each rank's thread: its device (rank 0 may bring the one it already has) and its group. */
  join(o: RankJoin): { readonly device: Device; readonly group: ProcessGroup };
  /** On the supervisor thread, once worker `rank` failed: wake ranks blocked inside device work. */
  onGroupBroken?(prepared: unknown, rank: number): void;
  /** Dummy weights made where they are cheapest (the GPU fills them at upload); default: the host's. */
  dummyWeights?(config: DeepseekConfig): WeightSource;
}

export interface RankJoin {
  readonly rank: number;
  readonly worldSize: number;
  /** The group's shared-memory state (its abort flag; the CPU collectives). */
  readonly shm: ShmGroupInit;
  readonly prepared: unknown;
  /** Rank 0 only: a device the caller already made. */
  readonly device?: Device;
}

/** CpuDevice on every rank; collectives over shared memory. */
export const cpuRankRuntime: RankRuntime = {
  device: 'cpu',
  prepare: () => undefined,
  join: ({ rank, shm, device }) => ({
    device: device ?? new CpuDevice(),
    group: new CpuProcessGroup(shm, rank),
  }),
};

export interface CreateTensorParallelModelOptions {
  /** A Hugging Face model directory, or a config with dummy weights (seeded). */
  readonly dir?: string;
  readonly config?: DeepseekConfig;
  readonly dummySeed?: number;
  readonly tensorParallelSize: number;
  /** How ranks get devices and groups (default: the CPU's). */
  readonly rankRuntime?: RankRuntime;
  /** Rank 0's device, where the caller already has one (the server's); else the runtime makes it. */
  readonly device?: Device;
  /** Registry name or a backend (its name is what the workers resolve); default "reference-mla". */
  readonly backend?: string | AttentionBackend;
  readonly name?: string;
  readonly maxModelLen?: number;
  /** Longest a rank waits in one CPU collective before the group is declared broken (default 60 s). */
  readonly collectiveTimeoutMs?: number;
  /** The worker threads' module (it calls runTensorParallelWorker with the same rankRuntime); defaults
   * to the built tp-worker.js beside this file, the CPU one. */
  readonly workerEntry?: URL;
}

/** The engine-facing model; `close()` stops the workers. */
export interface ClosableModel extends Model {
  /** Why the model cannot run steps any more (a broken tensor-parallel group), or undefined. */
  readonly brokenReason: string | undefined;
  close(): Promise<void>;
}

function openWeights(
  w: TensorParallelWeights,
  runtime: RankRuntime,
): {
  config: DeepseekConfig;
  source: WeightSource;
  close(): void;
} {
  if (w.kind === 'dummy') {
    const source = runtime.dummyWeights?.(w.config) ?? new DummyWeightSource(w.config, w.seed);
    return { config: w.config, source, close() {} };
  }
  const checkpoint = new SafetensorsCheckpoint(w.dir);
  return { config: loadDeepseekConfig(w.dir), source: checkpoint, close: () => checkpoint.close() };
}

/** Builds rank `group.rank`'s shard of the model on `device`. Runs on every rank, rank 0 included. */
export function buildTensorParallelRank(
  p: TensorParallelPayload,
  group: ProcessGroup,
  device: Device,
  runtime: RankRuntime = cpuRankRuntime,
): { readonly model: DeepseekModel; readonly hooks: VocabParallelHooks } {
  const { config, source, close } = openWeights(p.weights, runtime);
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

/** What a worker rank does with each command; the barrier makes a failed allocation visible to rank 0.
 * A batch with a graph key runs through the rank's own graph of that key, as rank 0's does. */
export function tensorParallelRankHandlers(model: Model, group: ProcessGroup): RankHandlers {
  const d = model.device;
  return {
    allocateKvCache(numBlocks, blockSize) {
      model.allocateKvCache(numBlocks, blockSize);
      group.barrier();
    },
    forward(batch) {
      const key = batch.graphKey;
      d.release(
        key !== undefined && d.graph !== undefined
          ? d.graph(key, () => model.forward(batch))
          : model.forward(batch),
      );
    },
  };
}

/**
 * The body of a tensor-parallel worker module (call it at the module's top level, with the same
 * runtime rank 0 uses): rank r joins its group, builds its shard of the model, says it is ready, then
 * runs rank 0's steps until shutdown. `wrap` lets a test module inject faults around the handlers.
 */
export function runTensorParallelWorker(
  runtime: RankRuntime,
  wrap: (handlers: RankHandlers, rank: number) => RankHandlers = (h) => h,
): void {
  runRankThreadEntry<TensorParallelPayload>(
    (ctx) => {
      const { device, group } = runtime.join({
        rank: ctx.rank,
        worldSize: ctx.worldSize,
        shm: ctx.group,
        prepared: ctx.payload.prepared,
      });
      const { model } = buildTensorParallelRank(ctx.payload, group, device, runtime);
      ctx.ready();
      serveSteps(ctx, wrap(tensorParallelRankHandlers(model, group), ctx.rank));
    },
    { onGroupBroken: (payload, rank) => runtime.onGroupBroken?.(payload.prepared, rank) },
  );
}

export class TensorParallelModel implements ClosableModel {
  readonly info: ModelInfo;
  readonly device: Device;
  readonly tensorParallelSize: number;
  readonly #local: DeepseekModel;
  readonly #hooks: VocabParallelHooks;
  readonly #group: ProcessGroup;
  readonly #threads: RankThreads;
  readonly #abort: ShmAbortFlag;

  constructor(
    local: { model: DeepseekModel; hooks: VocabParallelHooks },
    group: ProcessGroup,
    threads: RankThreads,
    abort: ShmAbortFlag,
  ) {
    this.#local = local.model;
    this.#hooks = local.hooks;
    this.#group = group;
    this.#threads = threads;
    this.#abort = abort;
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

  /** GPU collectives run after forward returned: a rank that died mid-step shows only here, once the
   * step's logits were read (the supervisor aborted the communicators so that read could finish). */
  checkStep(): void {
    if (this.#group.brokenReason !== undefined) {
      throw this.#abort.raised ? this.#abort.error() : distributedGroupBroken(this.#group.brokenReason);
    }
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
      // Not a failure: a device cutting a graph replay pass short (Device.graph's contract).
      if (!(e instanceof Error)) throw e;
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
  const runtime = o.rankRuntime ?? cpuRankRuntime;
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
  const name = o.name ?? (o.dir !== undefined ? basename(o.dir) : 'deepseek');
  if (N === 1) {
    if (o.device === undefined && runtime.device !== 'cpu') {
      throw distributedConfigInvalid(
        "a tensor-parallel size of 1 on CUDA needs rank 0's device (options.device)",
      );
    }
    const device = o.device ?? new CpuDevice();
    const backend = typeof o.backend === 'object' ? o.backend : attentionBackends.get(backendName);
    const single =
      o.dir !== undefined
        ? loadDeepseekModel(o.dir, {
            device,
            backend,
            name,
            ...(o.maxModelLen === undefined ? {} : { maxModelLen: o.maxModelLen }),
          })
        : new DeepseekModel(config, openWeights(weights, runtime).source, {
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
    device: runtime.device,
    backend: backendName,
    name,
    ...(o.maxModelLen === undefined ? {} : { maxModelLen: o.maxModelLen }),
    prepared: runtime.prepare(N),
  };
  // On GPUs the shared memory carries only the abort flag; NCCL carries the collectives.
  const group = createShmGroupInit(N, {
    ...(o.collectiveTimeoutMs === undefined ? {} : { timeoutMs: o.collectiveTimeoutMs }),
    ...(runtime.device === 'cpu' ? {} : { capacity: 1 }),
  });
  const threads = new RankThreads({ entry, group, channel: createStepChannelInit(), payload });
  let pg: ProcessGroup | undefined;
  try {
    // Rank 0 joins and loads its shard on this thread while the workers do theirs (joining a group
    // of GPUs blocks until every rank has joined).
    const joined = runtime.join({
      rank: 0,
      worldSize: N,
      shm: group,
      prepared: payload.prepared,
      ...(o.device === undefined ? {} : { device: o.device }),
    });
    pg = joined.group;
    const local = buildTensorParallelRank(payload, pg, joined.device, runtime);
    await threads.ready;
    return new TensorParallelModel(local, pg, threads, new ShmAbortFlag(group));
  } catch (e) {
    pg?.abort(`rank 0 failed to start: ${e instanceof Error ? e.message : String(e)}`);
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
