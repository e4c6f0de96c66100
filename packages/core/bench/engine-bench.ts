// Engine overhead per step with the model excluded (issue 4): scheduling, batch building, host
// sampling, stop checks, detokenization and output events, at 256 running requests in decode.
// The model returns a prebuilt logits tensor, so each step's time minus modelMs is pure engine.
// Run: pnpm --filter @flashserve/core bench:engine

import { resolve } from 'node:path';
import type { Device, Tensor } from '../src/device/device.js';
import { Engine } from '../src/engine/engine.js';
import type { ForwardBatch, Model } from '../src/engine/model.js';
import { defaultSamplingParams } from '../src/engine/protocol.js';
import type { Tokenizer } from '../src/engine/tokenizer.js';
import { loadHfTokenizer } from '../src/loader/hf-tokenizer.js';
import { ByteTokenizer } from '../test/support/byte-tokenizer.js';

class NullTensor implements Tensor {
  readonly dtype = 'f32';
  constructor(
    readonly shape: readonly number[],
    readonly data: Float32Array,
  ) {}
}

/** Logits rows with a fixed, slightly different argmax per row; no computation per step. */
class NullModel implements Model {
  readonly info;
  readonly device = {
    info: { kind: 'cpu', name: 'null', computeDType: 'f32' },
    toHost: (t: Tensor) => (t as NullTensor).data,
    release: () => {},
  } as unknown as Device;
  readonly #logits: Float32Array;

  constructor(
    readonly vocabSize: number,
    maxRows: number,
  ) {
    this.info = { name: 'null', vocabSize, maxPositionEmbeddings: 1 << 20 };
    this.#logits = new Float32Array(maxRows * vocabSize);
    for (let i = 0; i < this.#logits.length; i++) this.#logits[i] = ((i * 2654435761) >>> 0) / 2 ** 32;
  }

  kvCacheBytesPerBlock(): number {
    return 1;
  }

  allocateKvCache(): void {}

  forward(batch: ForwardBatch): Tensor {
    const rows = batch.logitsIndices.length;
    return new NullTensor([rows, this.vocabSize], this.#logits.subarray(0, rows * this.vocabSize));
  }
}

async function run(label: string, vocabSize: number, tokenizer: Tokenizer | undefined, stop: string[]) {
  const numReqs = 256;
  const promptLen = 128;
  const measureSteps = 400;
  const engine = new Engine({
    model: new NullModel(vocabSize, numReqs),
    ...(tokenizer ? { tokenizer } : {}),
    blockSize: 64,
    numBlocks: numReqs * 20,
    maxNumSeqs: numReqs,
    maxNumBatchedTokens: 8192,
    maxModelLen: 4096,
  });
  const params = defaultSamplingParams({ temperature: 0, maxTokens: 2000, ignoreEos: true, stop });
  const handles = [];
  for (let r = 0; r < numReqs; r++) {
    const prompt = Array.from({ length: promptLen }, (_, i) => (r * 131 + i * 7) % Math.min(vocabSize, 256));
    handles.push(engine.addRequest({ promptTokenIds: prompt, params }));
  }
  // Consume outputs like a streaming server would.
  const readers = handles.map(async (h) => {
    let n = 0;
    for await (const o of h) n += o.outputs[0]!.newTokenIds.length;
    return n;
  });
  const engineUs: number[] = [];
  const samplingUs: number[] = [];
  let steps = 0;
  let t0 = 0;
  let cpu0: NodeJS.CpuUsage | undefined;
  let cpu: NodeJS.CpuUsage | undefined;
  await new Promise<void>((resolve) => {
    engine.events.on('step', (s) => {
      steps++;
      // Skip the prefill steps and let the JIT warm up.
      if (steps === 50) {
        t0 = performance.now();
        cpu0 = process.cpuUsage();
      }
      if (steps > 50 && s.numDecodeTokens === numReqs) {
        engineUs.push((s.stepMs - s.modelMs) * 1000);
        samplingUs.push(s.samplingMs * 1000);
      }
      if (engineUs.length === measureSteps) {
        cpu = process.cpuUsage(cpu0);
        resolve();
      }
    });
  });
  const wallPerStepUs = ((performance.now() - t0) * 1000) / (steps - 50);
  // CPU time of the whole process (engine, readers, GC) per step: robust on a shared machine.
  const cpuPerStepUs = (cpu!.user + cpu!.system) / (steps - 50);
  await engine.shutdown();
  await Promise.all(readers);
  const restUs = engineUs.map((e, i) => e - samplingUs[i]!);
  const { mean, p50, p99 } = summary(engineUs);
  const sampling = summary(samplingUs);
  const rest = summary(restUs);
  console.log(
    `${label.padEnd(44)} engine per step: mean ${mean.toFixed(0)} us, p50 ${p50.toFixed(0)} us, ` +
      `p99 ${p99.toFixed(0)} us\n${''.padEnd(44)}   of which host sampling p50 ${sampling.p50.toFixed(0)} us, ` +
      `everything else p50 ${rest.p50.toFixed(0)} us (mean ${rest.mean.toFixed(0)} us)\n${''.padEnd(44)}   per step incl. readers and event loop: wall ${wallPerStepUs.toFixed(0)} us, ` +
      `process CPU ${cpuPerStepUs.toFixed(0)} us`,
  );
}

function summary(xs: number[]): { mean: number; p50: number; p99: number } {
  const s = [...xs].sort((a, b) => a - b);
  return {
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    p50: s[Math.floor(s.length / 2)]!,
    p99: s[Math.floor(s.length * 0.99)]!,
  };
}

// NOTE: the stop string never matches (the null model repeats one token per request), so every
// request stays in decode while it is measured; it is there to measure the stop-check cost.
const configs: [string, () => Promise<void>][] = [
  ['ids', () => run('vocab 1024, token ids only', 1024, undefined, [])],
  ['text', () => run('vocab 258, byte tokenizer (windowed) + stop', 258, new ByteTokenizer(), ['<never>'])],
  [
    'stream',
    () =>
      run('vocab 258, byte tokenizer (tokenBytes) + stop', 258, new ByteTokenizer({ byteStream: true }), [
        '<never>',
      ]),
  ],
  [
    'hf',
    () => {
      // A small byte-level BPE tokenizer.json from the models fixtures, through @huggingface/tokenizers.
      const dir = resolve(process.cwd(), '../models/test/fixtures/v3-dense-yarn-tok');
      const tok = loadHfTokenizer(dir);
      return run(`vocab ${tok.vocabSize}, HF tokenizer + stop string`, tok.vocabSize, tok, ['<never>']);
    },
  ],
  ['deepseek', () => run('vocab 129280 (DeepSeek), token ids only', 129_280, undefined, [])],
];
const only = process.argv[2];
console.log('256 running requests in decode, prompt 128, greedy, block size 64, model excluded');
for (const [name, go] of configs) if (only === undefined || only === name) await go();
