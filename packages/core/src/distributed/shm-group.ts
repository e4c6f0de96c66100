// Collectives over shared memory between the threads of one process: the CPU ProcessGroup.
//
// Why threads and not processes: Node cannot map memory into two processes without a native addon,
// and a pipe between processes would copy (and JSON-encode or at least frame) every message. Worker
// threads share SharedArrayBuffers and can block on Atomics.wait, so one all-reduce is one memcpy in,
// a reduction of 1/N of the data, and one memcpy out, with no serialisation. Node allows
// Atomics.wait on the main thread, which lets rank 0 (the engine thread) take part synchronously from
// inside Model.forward. The price is that a native crash in one rank takes the whole process down;
// a JS exception or a worker exit does not (see rank-threads.ts).
//
// Layout (all SharedArrayBuffers, created once by rank 0 in createShmGroupInit):
//   ctl     Int32Array: [ABORT, BAR_COUNT, BAR_GEN, REASON_LEN, KIND, arrived[0..N-1]]
//   reason  Uint8Array: UTF-8 text of the first abort reason
//   slots   Float32Array [2, N, capacity]: each rank's contribution, double-buffered by parity
//   result  Float32Array [2, capacity]: the reduced values, double-buffered by parity
//
// NOTE on double buffering: every collective is cut into chunks of at most `capacity` elements and
// each chunk flips the parity. A rank writes parity p again only after passing a barrier of the
// following (1-p) chunk, which every rank reaches only after it finished reading parity p. So one
// barrier per chunk suffices for gather and broadcast, and two for all-reduce (contributions in,
// sums out).

import { distributedGroupBroken, distributedTimeout, distributedWorkerFailed } from '../errors.js';

const ABORT = 0;
const BAR_COUNT = 1;
const BAR_GEN = 2;
const REASON_LEN = 3;
const KIND = 4;
const ARRIVED = 5;
const REASON_BYTES = 2048;
/** Abort states: the reason is being written (1), or complete and readable (2). */
const ABORT_WRITING = 1;
const ABORT_DONE = 2;
/** Waits are cut into slices so an abort is seen even if its notify was missed. */
const WAIT_SLICE_MS = 50;
/** Loads of the barrier word before sleeping: wake-up latency matters more than one core's spin. */
const SPIN_LOADS = 200;

/** What broke a group; picks the error code every rank throws. */
export type AbortKind = 'worker-failed' | 'timeout' | 'broken';
const KINDS: readonly AbortKind[] = ['broken', 'worker-failed', 'timeout'];

/** Everything a thread needs to join the group; structured-clonable (postMessage, workerData). */
export interface ShmGroupInit {
  readonly worldSize: number;
  /** Elements of one rank's slot; larger collectives are chunked. */
  readonly capacity: number;
  /** Longest a rank waits inside one collective before it breaks the group. */
  readonly timeoutMs: number;
  readonly ctl: SharedArrayBuffer;
  readonly reason: SharedArrayBuffer;
  readonly slots: SharedArrayBuffer;
  readonly result: SharedArrayBuffer;
}

export interface ShmGroupOptions {
  /** Elements per rank per chunk (default 1 << 20: 4 MiB). */
  readonly capacity?: number;
  /** Default 60 s: a slow first step (JIT warm-up, a long prefill on the CPU) must not trip it. */
  readonly timeoutMs?: number;
}

export function createShmGroupInit(worldSize: number, options: ShmGroupOptions = {}): ShmGroupInit {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`worldSize ${worldSize}`);
  const capacity = options.capacity ?? 1 << 20;
  return {
    worldSize,
    capacity,
    timeoutMs: options.timeoutMs ?? 60_000,
    ctl: new SharedArrayBuffer(4 * (ARRIVED + worldSize)),
    reason: new SharedArrayBuffer(REASON_BYTES),
    slots: new SharedArrayBuffer(4 * 2 * worldSize * capacity),
    result: new SharedArrayBuffer(4 * 2 * capacity),
  };
}

/** Reads and writes the abort state of a group; usable by any thread, rank or not (the supervisor). */
export class ShmAbortFlag {
  readonly #ctl: Int32Array;
  readonly #reason: Uint8Array;

  constructor(init: Pick<ShmGroupInit, 'ctl' | 'reason'>) {
    this.#ctl = new Int32Array(init.ctl);
    this.#reason = new Uint8Array(init.reason);
  }

  get raised(): boolean {
    return Atomics.load(this.#ctl, ABORT) !== 0;
  }

  /** The first reason given, once it is fully written (a writer takes microseconds). */
  get reason(): string | undefined {
    if (Atomics.load(this.#ctl, ABORT) === 0) return undefined;
    const t0 = Date.now();
    while (Atomics.load(this.#ctl, ABORT) !== ABORT_DONE && Date.now() - t0 < 1000) {
      Atomics.wait(this.#ctl, ABORT, ABORT_WRITING, 1);
    }
    const n = Atomics.load(this.#ctl, REASON_LEN);
    // TextDecoder refuses views of shared memory: copy out first.
    return new TextDecoder().decode(this.#reason.slice(0, n));
  }

  get kind(): AbortKind {
    return KINDS[Atomics.load(this.#ctl, KIND)] ?? 'broken';
  }

  /** The error a rank throws once the flag is up. */
  error(): Error {
    const reason = this.reason ?? 'unknown reason';
    switch (this.kind) {
      case 'worker-failed':
        return distributedWorkerFailed(reason);
      case 'timeout':
        return distributedTimeout(reason);
      case 'broken':
        return distributedGroupBroken(reason);
    }
  }

  /** Raises the flag (first reason wins) and wakes every thread blocked on the group. */
  raise(reason: string, kind: AbortKind = 'broken'): void {
    if (Atomics.compareExchange(this.#ctl, ABORT, 0, ABORT_WRITING) === 0) {
      Atomics.store(this.#ctl, KIND, KINDS.indexOf(kind));
      const bytes = new TextEncoder().encode(reason).subarray(0, REASON_BYTES);
      this.#reason.set(bytes);
      Atomics.store(this.#ctl, REASON_LEN, bytes.length);
      Atomics.store(this.#ctl, ABORT, ABORT_DONE);
    }
    Atomics.notify(this.#ctl, ABORT);
    // Bump the barrier generation's waiters awake; they re-check the flag.
    Atomics.notify(this.#ctl, BAR_GEN);
  }
}

/** One rank's handle on the shared-memory collectives (host arrays only). */
export class SharedMemoryGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly capacity: number;
  readonly timeoutMs: number;
  readonly abortFlag: ShmAbortFlag;
  readonly #ctl: Int32Array;
  readonly #slotsF: Float32Array;
  readonly #slotsI: Int32Array;
  readonly #result: Float32Array;
  #parity = 0;
  /** Collectives this rank has entered, for messages ("allReduce #812"). */
  #seq = 0;

  constructor(init: ShmGroupInit, rank: number) {
    if (!Number.isInteger(rank) || rank < 0 || rank >= init.worldSize) {
      throw new RangeError(`rank ${rank} outside a group of ${init.worldSize}`);
    }
    this.rank = rank;
    this.worldSize = init.worldSize;
    this.capacity = init.capacity;
    this.timeoutMs = init.timeoutMs;
    this.abortFlag = new ShmAbortFlag(init);
    this.#ctl = new Int32Array(init.ctl);
    this.#slotsF = new Float32Array(init.slots);
    this.#slotsI = new Int32Array(init.slots);
    this.#result = new Float32Array(init.result);
  }

  get brokenReason(): string | undefined {
    return this.abortFlag.reason;
  }

  abort(reason: string, kind: AbortKind = 'broken'): void {
    this.abortFlag.raise(reason, kind);
  }

  barrier(): void {
    this.#seq++;
    this.#barrier('barrier');
  }

  /** Sums x over ranks, in place. Every rank gets bitwise the same values. */
  allReduceSum(x: Float32Array): Float32Array {
    const op = `allReduce #${++this.#seq} (${x.length} elements)`;
    const N = this.worldSize;
    const cap = this.capacity;
    for (let off = 0; off < x.length; off += cap) {
      const m = Math.min(cap, x.length - off);
      const p = this.#flip();
      this.#slotsF.set(x.subarray(off, off + m), this.#slot(p, this.rank));
      this.#barrier(op);
      // Rank r sums elements [lo, hi) of the chunk, in rank order, into the result buffer.
      const per = Math.ceil(m / N);
      const lo = Math.min(m, this.rank * per);
      const hi = Math.min(m, lo + per);
      const res = p * cap;
      const s = this.#slotsF;
      const base0 = this.#slot(p, 0);
      for (let i = lo; i < hi; i++) {
        let acc = s[base0 + i]!;
        for (let r = 1; r < N; r++) acc += s[base0 + r * cap + i]!;
        this.#result[res + i] = acc;
      }
      this.#barrier(op);
      x.set(this.#result.subarray(res, res + m), off);
    }
    return x;
  }

  /** Returns [worldSize, x.length] rank-major; works for f32 and i32 alike (bits are copied). */
  allGather<A extends Float32Array | Int32Array>(x: A): A {
    const op = `allGather #${++this.#seq} (${x.length} elements)`;
    const N = this.worldSize;
    const n = x.length;
    const out = (x instanceof Float32Array ? new Float32Array(N * n) : new Int32Array(N * n)) as A;
    const slots = x instanceof Float32Array ? this.#slotsF : this.#slotsI;
    for (let off = 0; off < n; off += this.capacity) {
      const m = Math.min(this.capacity, n - off);
      const p = this.#flip();
      slots.set(x.subarray(off, off + m), this.#slot(p, this.rank));
      this.#barrier(op);
      for (let r = 0; r < N; r++) {
        const at = this.#slot(p, r);
        out.set(slots.subarray(at, at + m), r * n + off);
      }
    }
    return out;
  }

  /** Overwrites x with root's x, in place. */
  broadcast<A extends Float32Array | Int32Array>(x: A, root: number): A {
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) {
      throw new RangeError(`broadcast root ${root} outside a group of ${this.worldSize}`);
    }
    const op = `broadcast #${++this.#seq} (${x.length} elements from rank ${root})`;
    const slots = x instanceof Float32Array ? this.#slotsF : this.#slotsI;
    for (let off = 0; off < x.length; off += this.capacity) {
      const m = Math.min(this.capacity, x.length - off);
      const p = this.#flip();
      const at = this.#slot(p, root);
      if (this.rank === root) slots.set(x.subarray(off, off + m), at);
      this.#barrier(op);
      if (this.rank !== root) x.set(slots.subarray(at, at + m), off);
    }
    return x;
  }

  #flip(): number {
    const p = this.#parity;
    this.#parity ^= 1;
    return p;
  }

  #slot(parity: number, rank: number): number {
    return (parity * this.worldSize + rank) * this.capacity;
  }

  /** Generation barrier. The last rank to arrive resets the count and bumps the generation. */
  #barrier(op: string): void {
    const ctl = this.#ctl;
    this.#throwIfBroken();
    const gen = Atomics.load(ctl, BAR_GEN);
    Atomics.store(ctl, ARRIVED + this.rank, gen + 1);
    if (Atomics.add(ctl, BAR_COUNT, 1) === this.worldSize - 1) {
      Atomics.store(ctl, BAR_COUNT, 0);
      Atomics.add(ctl, BAR_GEN, 1);
      Atomics.notify(ctl, BAR_GEN);
      return;
    }
    for (let i = 0; i < SPIN_LOADS; i++) if (Atomics.load(ctl, BAR_GEN) !== gen) return;
    const deadline = performance.now() + this.timeoutMs;
    while (Atomics.load(ctl, BAR_GEN) === gen) {
      this.#throwIfBroken();
      const left = deadline - performance.now();
      if (left <= 0) {
        const missing: number[] = [];
        for (let r = 0; r < this.worldSize; r++)
          if (Atomics.load(ctl, ARRIVED + r) !== gen + 1) missing.push(r);
        const detail = `${op} on rank ${this.rank} waited ${this.timeoutMs} ms; rank(s) ${missing.join(', ')} never arrived`;
        this.abort(detail, 'timeout');
        throw distributedTimeout(detail);
      }
      Atomics.wait(ctl, BAR_GEN, gen, Math.min(left, WAIT_SLICE_MS));
    }
  }

  #throwIfBroken(): void {
    if (this.abortFlag.raised) throw this.abortFlag.error();
  }
}
