// Hands each engine step's inputs from rank 0 to the worker ranks through shared memory: no JSON and
// no message per step. Rank 0 writes the command and the batch's arrays into a SharedArrayBuffer and
// bumps a sequence word; workers block on that word (Atomics.wait) and copy the arrays out.
//
// Layout:
//   ctl  Int32Array: [SEQ, CMD, BUF_GEN, header fields (see H_*)]
//   data Int32Array: tokenIds[T] positions[T] slotMapping[T] queryStartLoc[R+1] seqLens[R]
//                    numComputedTokens[R] blockTables[R * maxBlocksPerReq] logitsIndices[L]
//                    graphKey[K] (the batch's graph key as UTF-16 code units; K = 0 when it has none)
// When a step does not fit `data`, rank 0 allocates a larger buffer, posts it once on each worker's
// MessagePort and bumps BUF_GEN; a worker that sees a new BUF_GEN takes the buffer with
// receiveMessageOnPort (synchronous: its event loop is blocked in Atomics.wait by design).
//
// NOTE: rank 0 may overwrite `data` for step k+1 only after every worker has copied step k out. That
// holds because a worker copies before its first collective of step k, and rank 0 cannot finish step
// k (its last collective) before every worker has entered that collective.

import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import type { CommonAttentionMetadata } from '../attention/common-metadata.js';
import type { ForwardBatch } from '../engine/model.js';
import type { ShmAbortFlag } from './shm-group.js';

const SEQ = 0;
const CMD = 1;
const BUF_GEN = 2;
const H_TOKENS = 3;
const H_REQS = 4;
const H_MAX_BLOCKS = 5;
const H_BLOCK_SIZE = 6;
const H_MAX_QUERY = 7;
const H_MAX_SEQ = 8;
const H_LOGITS = 9;
const H_GRAPH_KEY = 10;
const CTL_WORDS = 11;
/** Idle workers re-check the abort flag this often even without a notify. */
const IDLE_SLICE_MS = 200;
/** How long a worker polls for the next command before it sleeps. A sleeping thread takes tens of
 * microseconds to wake, and every rank's step starts only when the last rank has the command: at
 * batch 1 on GPUs that wait lands in the step's time. Decode steps follow each other within a few
 * milliseconds, so a worker of a busy server never sleeps; an idle one spins this long, then sleeps. */
const SPIN_MS = 5;

/** A word nobody changes: Atomics.wait on it is a synchronous sleep. */
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

const CMD_ALLOCATE = 1;
const CMD_FORWARD = 2;
const CMD_SHUTDOWN = 3;

export type StepCommand =
  | { readonly kind: 'allocate'; readonly numBlocks: number; readonly blockSize: number }
  | { readonly kind: 'forward'; readonly batch: ForwardBatch }
  | { readonly kind: 'shutdown' };

export interface StepChannelInit {
  readonly ctl: SharedArrayBuffer;
  readonly data: SharedArrayBuffer;
}

export function createStepChannelInit(initialWords = 1 << 16): StepChannelInit {
  return { ctl: new SharedArrayBuffer(4 * CTL_WORDS), data: new SharedArrayBuffer(4 * initialWords) };
}

/** Rank 0's end. */
export class StepSender {
  readonly #ctl: Int32Array;
  readonly #ports: readonly MessagePort[];
  #data: Int32Array;

  constructor(init: StepChannelInit, ports: readonly MessagePort[]) {
    this.#ctl = new Int32Array(init.ctl);
    this.#data = new Int32Array(init.data);
    this.#ports = ports;
  }

  send(cmd: StepCommand): void {
    const ctl = this.#ctl;
    switch (cmd.kind) {
      case 'allocate':
        Atomics.store(ctl, CMD, CMD_ALLOCATE);
        Atomics.store(ctl, H_TOKENS, cmd.numBlocks);
        Atomics.store(ctl, H_BLOCK_SIZE, cmd.blockSize);
        break;
      case 'forward':
        this.#writeBatch(cmd.batch);
        Atomics.store(ctl, CMD, CMD_FORWARD);
        break;
      case 'shutdown':
        Atomics.store(ctl, CMD, CMD_SHUTDOWN);
        break;
    }
    Atomics.add(ctl, SEQ, 1);
    Atomics.notify(ctl, SEQ);
  }

  #writeBatch(b: ForwardBatch): void {
    const md = b.attention;
    const T = b.tokenIds.length;
    const R = md.numReqs;
    const key = b.graphKey ?? '';
    const keyWords = new Int32Array(key.length);
    for (let i = 0; i < key.length; i++) keyWords[i] = key.charCodeAt(i);
    const parts = [
      b.tokenIds,
      md.positions,
      md.slotMapping,
      md.queryStartLoc.subarray(0, R + 1),
      md.seqLens.subarray(0, R),
      md.numComputedTokens.subarray(0, R),
      md.blockTables.subarray(0, R * md.maxBlocksPerReq),
      b.logitsIndices,
      keyWords,
    ];
    const words = parts.reduce((n, p) => n + p.length, 0);
    if (words > this.#data.length) this.#grow(words);
    let at = 0;
    for (const p of parts) {
      this.#data.set(p, at);
      at += p.length;
    }
    const ctl = this.#ctl;
    ctl[H_TOKENS] = T;
    ctl[H_REQS] = R;
    ctl[H_MAX_BLOCKS] = md.maxBlocksPerReq;
    ctl[H_BLOCK_SIZE] = md.blockSize;
    ctl[H_MAX_QUERY] = md.maxQueryLen;
    ctl[H_MAX_SEQ] = md.maxSeqLen;
    ctl[H_LOGITS] = b.logitsIndices.length;
    ctl[H_GRAPH_KEY] = key.length;
  }

  #grow(words: number): void {
    const data = new SharedArrayBuffer(4 * Math.max(words, 2 * this.#data.length));
    this.#data = new Int32Array(data);
    for (const port of this.#ports) port.postMessage({ data });
    Atomics.add(this.#ctl, BUF_GEN, 1);
  }
}

/** A worker's end. */
export class StepReceiver {
  readonly #ctl: Int32Array;
  readonly #port: MessagePort;
  readonly #abort: ShmAbortFlag;
  #data: Int32Array;
  #seen = 0;
  #bufGen = 0;

  constructor(init: StepChannelInit, port: MessagePort, abort: ShmAbortFlag) {
    this.#ctl = new Int32Array(init.ctl);
    this.#data = new Int32Array(init.data);
    this.#port = port;
    this.#abort = abort;
    // NOTE: 0, not the current value: a command sent before this thread got here must still be run.
    // Commands never overtake each other because rank 0 sends the next one only after a collective
    // (or the start-up handshake) that this rank must have reached.
    this.#seen = 0;
  }

  /** Blocks until rank 0 sends the next command; throws the group's error once it is broken. */
  receive(): StepCommand {
    const ctl = this.#ctl;
    const spinUntil = performance.now() + SPIN_MS;
    while (Atomics.load(ctl, SEQ) === this.#seen && performance.now() < spinUntil) {
      for (let i = 0; i < 256 && Atomics.load(ctl, SEQ) === this.#seen; i++);
    }
    while (Atomics.load(ctl, SEQ) === this.#seen) {
      if (this.#abort.raised) throw this.#abort.error();
      Atomics.wait(ctl, SEQ, this.#seen, IDLE_SLICE_MS);
    }
    this.#seen = Atomics.load(ctl, SEQ);
    switch (Atomics.load(ctl, CMD)) {
      case CMD_ALLOCATE:
        return { kind: 'allocate', numBlocks: ctl[H_TOKENS]!, blockSize: ctl[H_BLOCK_SIZE]! };
      case CMD_FORWARD:
        return { kind: 'forward', batch: this.#readBatch() };
      case CMD_SHUTDOWN:
        return { kind: 'shutdown' };
      default:
        throw new Error(`step channel: unknown command ${ctl[CMD]}`);
    }
  }

  #readBatch(): ForwardBatch {
    this.#syncBuffer();
    const ctl = this.#ctl;
    const T = ctl[H_TOKENS]!;
    const R = ctl[H_REQS]!;
    const maxBlocksPerReq = ctl[H_MAX_BLOCKS]!;
    const L = ctl[H_LOGITS]!;
    let at = 0;
    // slice() copies out of shared memory: rank 0 reuses the buffer for the next step.
    const take = (n: number) => {
      at += n;
      return this.#data.slice(at - n, at);
    };
    const tokenIds = take(T);
    const positions = take(T);
    const slotMapping = take(T);
    const queryStartLoc = take(R + 1);
    const seqLens = take(R);
    const numComputedTokens = take(R);
    const blockTables = take(R * maxBlocksPerReq);
    const logitsIndices = take(L);
    const keyWords = take(ctl[H_GRAPH_KEY]!);
    const attention: CommonAttentionMetadata = {
      numReqs: R,
      numTokens: T,
      queryStartLoc,
      seqLens,
      numComputedTokens,
      positions,
      slotMapping,
      blockTables,
      maxBlocksPerReq,
      blockSize: ctl[H_BLOCK_SIZE]!,
      maxQueryLen: ctl[H_MAX_QUERY]!,
      maxSeqLen: ctl[H_MAX_SEQ]!,
    };
    if (keyWords.length === 0) return { tokenIds, attention, logitsIndices };
    return { tokenIds, attention, logitsIndices, graphKey: String.fromCharCode(...keyWords) };
  }

  #syncBuffer(): void {
    const want = Atomics.load(this.#ctl, BUF_GEN);
    const t0 = Date.now();
    while (this.#bufGen !== want) {
      const msg = receiveMessageOnPort(this.#port) as { message: { data: SharedArrayBuffer } } | undefined;
      if (msg !== undefined) {
        this.#data = new Int32Array(msg.message.data);
        this.#bufGen++;
      } else if (Date.now() - t0 > 5000) {
        throw new Error('step channel: a grown step buffer was announced but never arrived');
      } else {
        Atomics.wait(SLEEPER, 0, 0, 1);
      }
    }
  }
}
