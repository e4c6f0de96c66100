// NcclProcessGroup: the ProcessGroup contract (core/distributed/process-group.ts) over NCCL, for CUDA
// tensors. NCCL is not linked: the addon dlopen()s libnccl.so.2 at run time (csrc/binding/nccl.cc),
// so everything builds without NCCL and a machine without it gets a reason, not a crash.
//
// Where libnccl.so.2 is looked for, first hit wins:
//   1. FLASHSERVE_NCCL_LIBRARY (a file path);
//   2. the dynamic loader's own search ("libnccl.so.2": LD_LIBRARY_PATH, the ldconfig cache);
//   3. Python's nvidia-nccl-cu13 / -cu12 wheels: <prefix>/lib/python3.*/{site,dist}-packages/nvidia/nccl/lib/
//      under $VIRTUAL_ENV, $CONDA_PREFIX, ~/.local, /usr/local and /usr (the GPU machine has it there);
//   4. /usr/local/cuda/lib64 and the distribution's lib directories.
//
// Collectives are enqueued on the device's compute stream through CudaDevice.enqueue/empty, so they
// order with the model's kernels and are captured into CUDA graphs with them (NCCL supports stream
// capture). One communicator per rank; rank 0 makes the unique id and hands it to the others.
//
// Failure: NCCL kernels wait for their peers without a timeout. `abort()` calls ncclCommAbort, which
// makes pending NCCL kernels return so a blocked stream drains; the rank-thread supervisor is where a
// dead peer is noticed and abort() is meant to be called from (see docs/tensor-parallel.md).
// NOTE: NCCL_NVLS_ENABLE=0 is forced before every communicator is created (nccl.cc).

import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  distributedGroupBroken,
  distributedUnavailable,
  type ProcessGroup,
  type ShmAbortFlag,
  type Tensor,
} from '@flashserve/core';
import { cudaAvailability, requireAddon } from './addon.js';
import type { CudaDevice } from './cuda-device.js';
import { type CudaDType, CudaTensor } from './tensor.js';

/** NCCL's ncclDataType_t values for our storage types. */
export const NCCL_DTYPE: Readonly<Record<CudaDType, number>> = { i32: 2, f32: 7, bf16: 9 };

interface NativeNccl {
  ncclLoad(
    paths: readonly string[],
  ): { ok: true; path: string; version: number } | { ok: false; reason: string };
  ncclGetUniqueId(): Uint8Array;
  ncclCommInitRank(uniqueId: Uint8Array, worldSize: number, rank: number): bigint;
  ncclAllReduce(comm: bigint, send: bigint, recv: bigint, count: number, dtype: number, stream: bigint): void;
  ncclAllGather(
    comm: bigint,
    send: bigint,
    recv: bigint,
    sendCount: number,
    dtype: number,
    stream: bigint,
  ): void;
  ncclBroadcast(
    comm: bigint,
    send: bigint,
    recv: bigint,
    count: number,
    dtype: number,
    root: number,
    stream: bigint,
  ): void;
  ncclCommAbort(comm: bigint): void;
  ncclCommDestroy(comm: bigint): void;
}

export type NcclAvailability =
  | { readonly available: true; readonly path: string; readonly version: number }
  | { readonly available: false; readonly reason: string };

function pythonNcclDirs(prefix: string): string[] {
  const lib = join(prefix, 'lib');
  if (!existsSync(lib)) return [];
  const out: string[] = [];
  for (const py of readdirSync(lib)) {
    if (!py.startsWith('python3')) continue;
    for (const site of ['site-packages', 'dist-packages'])
      out.push(join(lib, py, site, 'nvidia', 'nccl', 'lib'));
  }
  return out;
}

/** Every path tried for libnccl.so.2, in order (see the file comment). */
export function ncclLibraryCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const paths: string[] = [];
  if (env.FLASHSERVE_NCCL_LIBRARY) paths.push(env.FLASHSERVE_NCCL_LIBRARY);
  paths.push('libnccl.so.2');
  const prefixes = [env.VIRTUAL_ENV, env.CONDA_PREFIX, join(homedir(), '.local'), '/usr/local', '/usr'];
  for (const p of prefixes) if (p) for (const d of pythonNcclDirs(p)) paths.push(join(d, 'libnccl.so.2'));
  for (const d of [
    '/usr/local/cuda/lib64',
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
  ]) {
    paths.push(join(d, 'libnccl.so.2'));
  }
  // Absolute candidates that do not exist only lengthen the failure message.
  return paths.filter((p) => !p.startsWith('/') || existsSync(p) || p === env.FLASHSERVE_NCCL_LIBRARY);
}

let loaded: NcclAvailability | undefined;

/** Whether NCCL can be used here, and if not, why. Loads the library on the first call. */
export function ncclAvailability(): NcclAvailability {
  loaded ??= loadNccl();
  return loaded;
}

function loadNccl(): NcclAvailability {
  const cuda = cudaAvailability();
  if (!cuda.available) return { available: false, reason: `CUDA is unavailable: ${cuda.reason}` };
  const addon = requireAddon() as unknown as Partial<NativeNccl>;
  if (typeof addon.ncclLoad !== 'function') {
    return { available: false, reason: 'the @flashserve/cuda addon was built without NCCL support' };
  }
  const r = addon.ncclLoad(ncclLibraryCandidates());
  return r.ok
    ? { available: true, path: r.path, version: r.version }
    : { available: false, reason: `${r.reason} (set FLASHSERVE_NCCL_LIBRARY to libnccl.so.2's path)` };
}

function nccl(): NativeNccl {
  const a = ncclAvailability();
  if (!a.available) throw distributedUnavailable('NCCL', a.reason);
  return requireAddon() as unknown as NativeNccl;
}

/** Rank 0 makes the id once and hands it to every other rank (128 opaque bytes). */
export function ncclUniqueId(): Uint8Array {
  return nccl().ncclGetUniqueId();
}

/** What the ranks of one process (worker threads, one per GPU) share; made once by rank 0 with
 * createNcclGroupInit and structured-cloned to the others. */
export interface NcclGroupInit {
  /** From ncclUniqueId() on rank 0. */
  readonly uniqueId: Uint8Array;
  /** BigInt64Array [worldSize]: each rank's live communicator handle (0 when none), so whichever thread
   * sees the group fail aborts the live ranks' communicators (abortNcclGroup), and each handle is
   * aborted or destroyed at most once (whoever swaps it to 0 owns it). */
  readonly comms: SharedArrayBuffer;
}

export function createNcclGroupInit(worldSize: number): NcclGroupInit {
  return { uniqueId: ncclUniqueId(), comms: new SharedArrayBuffer(8 * worldSize) };
}

/**
 * Aborts the communicators in `init` of every rank but `deadRank` (any thread may call it, the
 * rank-thread supervisor included): pending NCCL kernels return, so streams blocked on a dead peer
 * drain and their ranks see the group's error. Idempotent. `log` hears each abort.
 * NOTE: the dead rank's communicator is left alone. On two H100s (NCCL 2.2x), aborting the
 * communicator of a thread that had already exited blocked the caller forever, which then kept the
 * process from exiting; a live rank's abort from another thread took 2 ms. The dead rank queued
 * nothing after its thread ended, so nothing waits on its communicator.
 */
export function abortNcclGroup(
  init: NcclGroupInit,
  deadRank = -1,
  log: (message: string) => void = () => {},
): void {
  const comms = new BigInt64Array(init.comms);
  for (let r = 0; r < comms.length; r++) {
    if (r === deadRank) continue;
    const comm = Atomics.exchange(comms, r, 0n);
    if (comm === 0n) continue;
    const t0 = performance.now();
    try {
      nccl().ncclCommAbort(comm);
      log(`aborted the NCCL communicator of rank ${r} in ${(performance.now() - t0).toFixed(1)} ms`);
    } catch (e) {
      // Best effort: the group is unusable either way.
      log(
        `aborting the NCCL communicator of rank ${r} failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }
}

export interface NcclProcessGroupOptions {
  /** This rank's device: its current GPU and its compute stream. */
  readonly device: CudaDevice;
  readonly rank: number;
  readonly worldSize: number;
  /** From ncclUniqueId() on rank 0; or the whole shared init (then abort() reaches every rank). */
  readonly uniqueId?: Uint8Array;
  readonly init?: NcclGroupInit;
  /** The group's abort flag, shared with the other ranks' threads: a failure any thread raises breaks
   * this group too. */
  readonly abortFlag?: Pick<ShmAbortFlag, 'reason' | 'raise'>;
}

export class NcclProcessGroup implements ProcessGroup {
  readonly backend = 'nccl' as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly #n: NativeNccl;
  readonly #device: CudaDevice;
  readonly #comm: bigint;
  readonly #init: NcclGroupInit | undefined;
  readonly #flag: Pick<ShmAbortFlag, 'reason' | 'raise'> | undefined;
  #broken: string | undefined;

  /** Blocks until every rank has created its communicator (ncclCommInitRank is collective). */
  constructor(o: NcclProcessGroupOptions) {
    const uniqueId = o.init?.uniqueId ?? o.uniqueId;
    if (uniqueId === undefined) throw new Error('NcclProcessGroup: give uniqueId or init');
    this.#n = nccl();
    this.#device = o.device;
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.#init = o.init;
    this.#flag = o.abortFlag;
    this.#comm = this.#n.ncclCommInitRank(uniqueId, o.worldSize, o.rank);
    if (o.init !== undefined) Atomics.store(new BigInt64Array(o.init.comms), o.rank, this.#comm);
  }

  get brokenReason(): string | undefined {
    return this.#flag?.reason ?? this.#broken;
  }

  /** The communicator handle, for a watchdog on another thread to pass to ncclCommAbort. */
  get comm(): bigint {
    return this.#comm;
  }

  allReduceSum(x: Tensor): Tensor;
  allReduceSum(x: Float32Array): Float32Array;
  allReduceSum(x: Tensor | Float32Array): Tensor | Float32Array {
    if (x instanceof Float32Array) return this.#viaDevice(x, (t) => this.allReduceSum(t));
    const t = this.#tensor(x, 'allReduceSum');
    const out = this.#device.empty(t.shape, t.cudaDtype);
    this.#enqueue('allReduceSum', () =>
      this.#n.ncclAllReduce(
        this.#comm,
        t.ptr,
        out.ptr,
        t.numel,
        NCCL_DTYPE[t.cudaDtype],
        this.#device.stream,
      ),
    );
    return out;
  }

  allGather(x: Tensor): Tensor;
  allGather(x: Float32Array): Float32Array;
  allGather(x: Tensor | Float32Array): Tensor | Float32Array {
    if (x instanceof Float32Array) return this.#viaDevice(x, (t) => this.allGather(t));
    const t = this.#tensor(x, 'allGather');
    const out = this.#device.empty([this.worldSize, ...t.shape], t.cudaDtype);
    this.#enqueue('allGather', () =>
      this.#n.ncclAllGather(
        this.#comm,
        t.ptr,
        out.ptr,
        t.numel,
        NCCL_DTYPE[t.cudaDtype],
        this.#device.stream,
      ),
    );
    return out;
  }

  broadcast(x: Tensor, root: number): Tensor;
  broadcast(x: Float32Array | Int32Array, root: number): Float32Array | Int32Array;
  broadcast(x: Tensor | Float32Array | Int32Array, root: number): Tensor | Float32Array | Int32Array {
    if (x instanceof Float32Array || x instanceof Int32Array) {
      const d = this.#device;
      const t = x instanceof Int32Array ? d.upload(x, [x.length], 'i32') : d.uploadF32(x, [x.length]);
      const y = this.broadcast(t, root);
      const host = d.toHost(y);
      d.release(t);
      d.release(y);
      x.set(host as never);
      return x;
    }
    const t = this.#tensor(x, 'broadcast');
    const out = this.#device.empty(t.shape, t.cudaDtype);
    this.#enqueue('broadcast', () =>
      this.#n.ncclBroadcast(
        this.#comm,
        t.ptr,
        out.ptr,
        t.numel,
        NCCL_DTYPE[t.cudaDtype],
        root,
        this.#device.stream,
      ),
    );
    return out;
  }

  /** NCCL has no barrier: a one-element all-reduce, waited for on the host. */
  barrier(): void {
    const d = this.#device;
    const one = d.uploadF32(Float32Array.of(1), [1]);
    const sum = this.allReduceSum(one);
    d.toHost(sum);
    d.release(one);
    d.release(sum);
  }

  abort(reason: string): void {
    // Once the group is broken anywhere (the shared flag), whoever broke it has aborted what there
    // was to abort; aborting again could reach a dead rank's communicator (see abortNcclGroup).
    if (this.brokenReason !== undefined) return;
    this.#broken = reason;
    this.#flag?.raise(reason);
    if (this.#init !== undefined) {
      abortNcclGroup(this.#init);
      return;
    }
    try {
      this.#n.ncclCommAbort(this.#comm);
    } catch {
      // Aborting is best effort: the group is unusable either way.
    }
  }

  destroy(): void {
    // The handle is ours to destroy only if no abort took it first (with a shared table, an abort on
    // any thread swaps it out).
    const live =
      this.#init === undefined
        ? this.#broken === undefined
        : Atomics.exchange(new BigInt64Array(this.#init.comms), this.rank, 0n) !== 0n;
    this.#broken ??= 'the process group was destroyed';
    if (live) this.#n.ncclCommDestroy(this.#comm);
  }

  #tensor(x: Tensor, op: string): CudaTensor {
    if (!(x instanceof CudaTensor)) throw new Error(`${op}: the tensor does not belong to a CUDA device`);
    return x;
  }

  #enqueue(op: string, launch: () => void): void {
    const broken = this.brokenReason;
    if (broken !== undefined) throw distributedGroupBroken(broken);
    try {
      this.#device.enqueue(launch);
    } catch (e) {
      this.abort(`${op} failed on rank ${this.rank}: ${e instanceof Error ? e.message : String(e)}`);
      throw e;
    }
  }

  #viaDevice(x: Float32Array, f: (t: Tensor) => Tensor): Float32Array {
    const d = this.#device;
    // uploadF32: a plain upload would store bf16 and lose the host data's precision.
    const t = d.uploadF32(x, [x.length]);
    const y = f(t);
    const host = d.toHost(y) as Float32Array;
    d.release(t);
    d.release(y);
    if (host.length === x.length) {
      x.set(host);
      return x;
    }
    return host;
  }
}
