// Starts and watches the worker ranks (1 .. N-1) of a tensor-parallel model as worker threads.
//
//   engine thread (rank 0) --spawns--> supervisor thread --spawns--> rank 1 .. rank N-1
//
// Why a supervisor: rank 0 spends each step blocked in Atomics.wait inside collectives, so its event
// loop cannot see a worker's 'exit' or 'error' event until the step is over. The supervisor does
// nothing but listen: when a rank throws or exits unexpectedly it raises the group's abort flag at
// once, which wakes every rank blocked in a collective with FS_ERR_DISTRIBUTED_WORKER_FAILED. The
// collective timeout remains the last resort (a rank stuck in an endless loop, a hung GPU).
//
// One module is the entry of every thread (the models package's worker file): it calls
// runRankThreadEntry(), which becomes the supervisor or a rank according to its workerData.
// Every thread is started with NCCL_NVLS_ENABLE=0 in its environment (NVLink multicast stays off).

import { MessageChannel, type MessagePort, parentPort, Worker, workerData } from 'node:worker_threads';
import type { ForwardBatch } from '../engine/model.js';
import { distributedWorkerFailed } from '../errors.js';
import { ShmAbortFlag, type ShmGroupInit } from './shm-group.js';
import { type StepChannelInit, StepReceiver, StepSender } from './step-channel.js';

/** How long shutdown() waits for the threads to stop once it has told them to. */
const TERMINATE_WAIT_MS = 5000;

/** The environment every rank thread gets on top of the parent's. */
export const RANK_THREAD_ENV: Readonly<Record<string, string>> = { NCCL_NVLS_ENABLE: '0' };

export interface RankThreadsOptions<P> {
  /** The module every thread runs; it must call runRankThreadEntry(). */
  readonly entry: URL;
  readonly group: ShmGroupInit;
  readonly channel: StepChannelInit;
  /** What each rank builds (structured-cloned to every thread). */
  readonly payload: P;
  /** How long shutdown() waits for ranks to leave before terminating them (default 5 s). */
  readonly shutdownGraceMs?: number;
}

interface SupervisorData<P> {
  readonly role: 'flashserve-supervisor';
  readonly entry: string;
  readonly group: ShmGroupInit;
  readonly channel: StepChannelInit;
  readonly ports: readonly MessagePort[];
  readonly payload: P;
}

interface RankData<P> {
  readonly role: 'flashserve-rank';
  readonly rank: number;
  readonly group: ShmGroupInit;
  readonly channel: StepChannelInit;
  readonly port: MessagePort;
  readonly payload: P;
}

type SupervisorMessage =
  | { readonly type: 'ready'; readonly rank: number }
  | { readonly type: 'failed'; readonly rank: number; readonly message: string }
  | { readonly type: 'exit'; readonly rank: number; readonly code: number };

function threadEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return { ...env, ...RANK_THREAD_ENV };
}

/** Flags Worker refuses (V8 heap and stack sizes, the process title): a server started with
 * `node --max-old-space-size=...` must still start its ranks. */
const PROCESS_ONLY_FLAGS = ['--max-old-space-size', '--max-semi-space-size', '--stack-size', '--title'];

/** The parent's Node flags minus export conditions and process-only flags. Worker threads run built
 * JavaScript; a test runner's `--conditions flashserve-source` would send their imports to TypeScript
 * sources they cannot load. */
export function threadExecArgv(argv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--conditions' || a === '-C') i++;
    else if (a.startsWith('--conditions=')) continue;
    else if (PROCESS_ONLY_FLAGS.some((f) => a === f || a.startsWith(`${f}=`))) {
      if (!a.includes('=')) i++;
    } else out.push(a);
  }
  return out;
}

/** Rank 0's handle on ranks 1 .. N-1. */
export class RankThreads {
  readonly sender: StepSender;
  /** Resolves once every worker rank has built its model; rejects with the first failure. */
  readonly ready: Promise<void>;
  readonly #supervisor: Worker;
  readonly #abort: ShmAbortFlag;
  readonly #graceMs: number;
  readonly #exited: Promise<void>;
  #shutDown = false;

  constructor(options: RankThreadsOptions<unknown>) {
    const N = options.group.worldSize;
    // NOTE: NCCL reads its environment from the process (getenv), which worker threads share; the
    // variable is set here, where workers are started, as well as in each thread's env.
    process.env.NCCL_NVLS_ENABLE = RANK_THREAD_ENV.NCCL_NVLS_ENABLE;
    this.#abort = new ShmAbortFlag(options.group);
    this.#graceMs = options.shutdownGraceMs ?? 5000;
    const mine: MessagePort[] = [];
    const theirs: MessagePort[] = [];
    for (let r = 1; r < N; r++) {
      const ch = new MessageChannel();
      mine.push(ch.port1);
      theirs.push(ch.port2);
    }
    this.sender = new StepSender(options.channel, mine);
    const data: SupervisorData<unknown> = {
      role: 'flashserve-supervisor',
      entry: options.entry.href,
      group: options.group,
      channel: options.channel,
      ports: theirs,
      payload: options.payload,
    };
    this.#supervisor = new Worker(options.entry, {
      workerData: data,
      transferList: theirs,
      env: threadEnv(),
      execArgv: threadExecArgv(),
    });
    // Ports are only ever read by receiveMessageOnPort on the worker side; ours must not keep the
    // event loop alive.
    for (const p of mine) p.unref();
    this.#exited = new Promise((resolve) => this.#supervisor.once('exit', () => resolve()));
    this.ready = new Promise<void>((resolve, reject) => {
      let ready = 0;
      const fail = (message: string) => {
        this.#abort.raise(message, 'worker-failed');
        reject(distributedWorkerFailed(message));
      };
      this.#supervisor.on('message', (m: SupervisorMessage) => {
        if (m.type === 'ready' && ++ready === N - 1) resolve();
        else if (m.type === 'failed') fail(`worker rank ${m.rank} failed: ${m.message}`);
        else if (m.type === 'exit' && !this.#shutDown)
          fail(`worker rank ${m.rank} exited with code ${m.code}`);
      });
      this.#supervisor.on('error', (e) => fail(`the supervisor thread failed: ${e.message}`));
      this.#supervisor.once('exit', (code) => {
        if (!this.#shutDown) fail(`the supervisor thread exited with code ${code}`);
      });
    });
    // A failure after start-up is reported through the abort flag, not through `ready`.
    this.ready.catch(() => {});
  }

  /** Tells the ranks to stop, waits for them (terminating stragglers after the grace period; at once
   * when the group is broken, since a rank stuck in a loop would never read the shutdown). */
  async shutdown(): Promise<void> {
    if (this.#shutDown) return this.#exited;
    this.#shutDown = true;
    const graceMs = this.#abort.raised ? 0 : this.#graceMs;
    this.sender.send({ kind: 'shutdown' });
    this.#supervisor.postMessage({ type: 'shutdown', graceMs });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#exited,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs + 1000);
      }),
    ]);
    clearTimeout(timer);
    // NOTE: a thread blocked inside native code (a GPU call that never returns) cannot be stopped;
    // give up waiting for it after a while, so close() always returns and the process can exit.
    await Promise.race([
      this.#supervisor.terminate(),
      new Promise<void>((resolve) => setTimeout(resolve, TERMINATE_WAIT_MS).unref()),
    ]);
  }
}

/** What a rank thread's main function receives. */
export interface RankContext<P> {
  readonly rank: number;
  readonly worldSize: number;
  readonly group: ShmGroupInit;
  readonly payload: P;
  readonly receiver: StepReceiver;
  readonly abort: ShmAbortFlag;
  /** Tells rank 0 this rank has built its model and waits for steps. */
  ready(): void;
}

export interface RankHandlers {
  allocateKvCache(numBlocks: number, blockSize: number): void;
  forward(batch: ForwardBatch): void;
}

/** A rank's step loop: runs rank 0's commands until shutdown, or until the group breaks. */
export function serveSteps(ctx: RankContext<unknown>, handlers: RankHandlers): void {
  for (;;) {
    try {
      const cmd = ctx.receiver.receive();
      if (cmd.kind === 'shutdown') return;
      if (cmd.kind === 'allocate') handlers.allocateKvCache(cmd.numBlocks, cmd.blockSize);
      else handlers.forward(cmd.batch);
    } catch (e) {
      // Another rank's failure surfaces here as a collective error: not this rank's to report.
      if (ctx.abort.raised) return;
      throw e;
    }
  }
}

/** What the supervisor thread does besides raising the abort flag when a worker rank fails. */
export interface SupervisorHooks<P> {
  /** Called once, on the supervisor thread, after the flag is raised for worker `rank`'s failure. Ranks
   * on GPUs block inside device work that never reads the flag (NCCL kernels waiting for a dead peer):
   * this is where their communicators are aborted so those streams drain. */
  onGroupBroken?(payload: P, rank: number): void;
}

/**
 * The body of the worker module: call it at the module's top level. On the main thread it does
 * nothing; in the supervisor it supervises; in a rank it runs `rankMain` and reports its failure.
 */
export function runRankThreadEntry<P>(
  rankMain: (ctx: RankContext<P>) => void | Promise<void>,
  hooks: SupervisorHooks<P> = {},
): void {
  const data = workerData as SupervisorData<P> | RankData<P> | undefined;
  if (parentPort === null || data === undefined || typeof data !== 'object') return;
  if (data.role === 'flashserve-supervisor') supervise(data, hooks);
  else if (data.role === 'flashserve-rank') void runRank(data, rankMain);
}

async function runRank<P>(data: RankData<P>, rankMain: (ctx: RankContext<P>) => void | Promise<void>) {
  const abort = new ShmAbortFlag(data.group);
  const ctx: RankContext<P> = {
    rank: data.rank,
    worldSize: data.group.worldSize,
    group: data.group,
    payload: data.payload,
    receiver: new StepReceiver(data.channel, data.port, abort),
    abort,
    ready: () => parentPort?.postMessage({ type: 'ready', rank: data.rank }),
  };
  try {
    await rankMain(ctx);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    abort.raise(`worker rank ${data.rank} failed: ${message}`, 'worker-failed');
    parentPort?.postMessage({ type: 'failed', rank: data.rank, message });
    process.exitCode = 1;
  }
  data.port.close();
}

function supervise<P>(data: SupervisorData<P>, hooks: SupervisorHooks<P>): void {
  const abort = new ShmAbortFlag(data.group);
  const workers: Worker[] = [];
  let shuttingDown = false;
  let alive = data.ports.length;
  let hooked = false;
  const broken = (reason: string, rank: number) => {
    abort.raise(reason, 'worker-failed');
    if (hooked) return;
    hooked = true;
    try {
      hooks.onGroupBroken?.(data.payload, rank);
    } catch {
      // Best effort: the flag is up either way.
    }
  };
  const post = (m: SupervisorMessage) => {
    if (m.type === 'failed' && !shuttingDown) broken(`worker rank ${m.rank} failed: ${m.message}`, m.rank);
    parentPort?.postMessage(m);
  };
  data.ports.forEach((port, i) => {
    const rank = i + 1;
    const rd: RankData<P> = {
      role: 'flashserve-rank',
      rank,
      group: data.group,
      channel: data.channel,
      port,
      payload: data.payload,
    };
    const w = new Worker(new URL(data.entry), {
      workerData: rd,
      transferList: [port],
      env: threadEnv(),
      execArgv: threadExecArgv(),
    });
    workers.push(w);
    w.on('message', (m: SupervisorMessage) => post(m));
    w.on('error', (e) => post({ type: 'failed', rank, message: e.message }));
    w.on('exit', (code) => {
      if (!shuttingDown && !abort.raised) broken(`worker rank ${rank} exited with code ${code}`, rank);
      post({ type: 'exit', rank, code });
      if (--alive === 0) parentPort?.close();
    });
  });
  parentPort?.on('message', (m: { type: string; graceMs?: number }) => {
    if (m.type !== 'shutdown') return;
    shuttingDown = true;
    setTimeout(() => {
      for (const w of workers) void w.terminate();
    }, m.graceMs ?? 5000).unref();
  });
}
