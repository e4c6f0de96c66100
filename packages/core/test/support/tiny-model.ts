// A deterministic test model whose logits depend on each request's whole token history *as read back
// from the paged KV cache* through the step's block tables. A wrong slot mapping, block table,
// prefix-cache hit or fork therefore changes the output (or trips a position check), so batching,
// preemption and caching bugs show up as different tokens.

import type { Device, Tensor } from '../../src/device/device.js';
import type { ForwardBatch, Model, ModelInfo } from '../../src/engine/model.js';
import { makeHostDevice } from './host-device.js';

/** Writes logits for the next token after `history` into `out` (length vocabSize, zeroed). */
export type LogitsFn = (history: readonly number[], out: Float32Array) => void;

export interface TinyModelOptions {
  vocabSize?: number;
  maxPositionEmbeddings?: number;
  logits?: LogitsFn;
  /** Throws from forward when this returns true. */
  failWhen?: (batch: ForwardBatch) => boolean;
  /** checkStep throws when this returns true (a step that broke after forward returned). */
  stepBrokeWhen?: () => boolean;
  /** Honour ForwardBatch.prevTokenIds (async scheduling), merging on the device as a GPU model does. */
  readsDeviceTokenIds?: boolean;
}

export class TinyModel implements Model {
  readonly info: ModelInfo;
  readonly device: Device = makeHostDevice();
  readonly #logits: LogitsFn;
  readonly #failWhen: ((batch: ForwardBatch) => boolean) | undefined;
  readonly #stepBrokeWhen: (() => boolean) | undefined;
  #cacheTokens = new Int32Array(0);
  #cachePositions = new Int32Array(0);
  #blockSize = 0;
  readonly readsDeviceTokenIds: boolean;
  numForwards = 0;
  /** Forwards that took some of their token ids from the device (async scheduling). */
  numDeviceTokenForwards = 0;
  maxBatchSeqs = 0;

  constructor(opts: TinyModelOptions = {}) {
    this.info = {
      name: 'tiny',
      vocabSize: opts.vocabSize ?? 258,
      maxPositionEmbeddings: opts.maxPositionEmbeddings ?? 4096,
    };
    this.#logits = opts.logits ?? hashLogits;
    this.#failWhen = opts.failWhen;
    this.#stepBrokeWhen = opts.stepBrokeWhen;
    this.readsDeviceTokenIds = opts.readsDeviceTokenIds ?? false;
  }

  checkStep(): void {
    if (this.#stepBrokeWhen?.()) throw new Error('tiny model: the step broke after forward');
  }

  kvCacheBytesPerBlock(blockSize: number): number {
    return blockSize * 8;
  }

  allocateKvCache(numBlocks: number, blockSize: number): void {
    this.#blockSize = blockSize;
    this.#cacheTokens = new Int32Array(numBlocks * blockSize).fill(-1);
    this.#cachePositions = new Int32Array(numBlocks * blockSize).fill(-1);
  }

  forward(batch: ForwardBatch): Tensor {
    this.numForwards++;
    if (this.#failWhen?.(batch)) throw new Error('tiny model: injected failure');
    const a = batch.attention;
    const bs = this.#blockSize;
    if (a.blockSize !== bs) throw new Error(`block size ${a.blockSize} != allocated ${bs}`);
    this.maxBatchSeqs = Math.max(this.maxBatchSeqs, a.numReqs);
    const tokenIds = this.#tokenIds(batch);
    for (let t = 0; t < a.numTokens; t++) {
      const slot = a.slotMapping[t]!;
      if (slot < bs) throw new Error(`token ${t} written into the null block (slot ${slot})`);
      this.#cacheTokens[slot] = tokenIds[t]!;
      this.#cachePositions[slot] = a.positions[t]!;
    }
    const vocab = this.info.vocabSize;
    const out = new Float32Array(batch.logitsIndices.length * vocab);
    let req = 0;
    for (let r = 0; r < batch.logitsIndices.length; r++) {
      const row = batch.logitsIndices[r]!;
      while (a.queryStartLoc[req + 1]! <= row) req++;
      if (req >= a.numReqs) throw new Error(`logits row ${row} is past the batch's tokens`);
      // Usually a request's last token; any of its tokens when prompt logprobs are asked for.
      const seqLen = a.positions[row]! + 1;
      if (seqLen > a.seqLens[req]!) throw new Error(`logits row ${row} is past request ${req}'s length`);
      const history: number[] = [];
      for (let p = 0; p < seqLen; p++) {
        const block = a.blockTables[req * a.maxBlocksPerReq + Math.floor(p / bs)]!;
        const slot = block * bs + (p % bs);
        if (this.#cachePositions[slot] !== p) {
          throw new Error(
            `request ${req}: cache slot ${slot} holds position ${this.#cachePositions[slot]}, not ${p}`,
          );
        }
        history.push(this.#cacheTokens[slot]!);
      }
      this.#logits(history, out.subarray(r * vocab, (r + 1) * vocab));
    }
    return this.device.upload(out, [batch.logitsIndices.length, vocab], 'f32');
  }

  #tokenIds(batch: ForwardBatch): Int32Array {
    const prev = batch.prevTokenIds;
    if (prev === undefined) return batch.tokenIds;
    if (!this.readsDeviceTokenIds) throw new Error('tiny model: given device token ids it does not read');
    if (prev.rows.some((r) => r >= 0)) this.numDeviceTokenForwards++;
    const d = this.device;
    const T = batch.tokenIds.length;
    const ids = d.upload(batch.tokenIds, [T], 'i32');
    const rows = d.upload(prev.rows, [T], 'i32');
    return d.toHost(d.mergeTokenIds!(ids, prev.ids, rows)) as Int32Array;
  }
}

/** Pseudo-random logits in [0, 6) that are a function of the whole history. */
export function hashLogits(history: readonly number[], out: Float32Array): void {
  let h = 0x811c9dc5;
  for (const t of history) h = Math.imul(h ^ t, 0x01000193);
  for (let v = 0; v < out.length; v++) {
    let z = Math.imul(h ^ Math.imul(v + 1, 0x9e3779b1), 0x85ebca6b);
    z ^= z >>> 13;
    z = Math.imul(z, 0xc2b2ae35);
    z ^= z >>> 16;
    out[v] = ((z >>> 0) / 0x1_0000_0000) * 6;
  }
}

/** Logits that force the tokens of `script` after a prompt of `promptLen` tokens, then `after`. */
export function scriptedLogits(promptLen: number, script: readonly number[], after: number): LogitsFn {
  return (history, out) => {
    const next = script[history.length - promptLen] ?? after;
    out[next] = 10;
  };
}
