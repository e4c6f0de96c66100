// Random workloads against the engine: whatever the cache size, token budget, arrival times, n and
// aborts, every request that is not aborted produces exactly what it produces alone, and every block
// comes back; with async scheduling too (steps launched before the previous step's tokens are read
// back, requests that stop mid-pipeline computed one step too many).

import fc from 'fast-check';
import { expect, test } from 'vitest';
import type { AddRequestInput, RequestOutput } from '../src/engine/protocol.js';
import { collect } from './support/collect.js';
import { makeEngine, params, prompt, tokensOf } from './support/run-engine.js';

interface Spec {
  template: number;
  promptLen: number;
  maxTokens: number;
  n: number;
  seed: number | undefined;
  arriveAtStep: number;
  abortAtStep: number | undefined;
  /** Stop token ids (about 1 in 6 tokens ends the request early). */
  stops: boolean;
}

const specArb: fc.Arbitrary<Spec> = fc.record({
  template: fc.nat(2),
  promptLen: fc.integer({ min: 1, max: 30 }),
  maxTokens: fc.integer({ min: 1, max: 12 }),
  n: fc.integer({ min: 1, max: 3 }),
  seed: fc.option(fc.nat(1000), { nil: undefined }),
  arriveAtStep: fc.nat(6),
  abortAtStep: fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }),
  stops: fc.boolean(),
});

const STOP_IDS = Array.from({ length: 43 }, (_, i) => i * 6);

function input(spec: Spec, i: number): AddRequestInput {
  const stopTokenIds = spec.stops ? STOP_IDS : [];
  const p =
    spec.seed === undefined
      ? params({ maxTokens: spec.maxTokens, n: spec.n, stopTokenIds })
      : params({
          maxTokens: spec.maxTokens,
          n: spec.n,
          temperature: 0.8,
          topK: 50,
          seed: spec.seed,
          stopTokenIds,
        });
  return { requestId: `q${i}`, promptTokenIds: prompt(spec.template, spec.promptLen), params: p };
}

/** Blocks of 4 tokens one request can hold at its longest (as Engine checks at addRequest). */
function blocksAtLongest(s: Spec): number {
  if (s.n === 1) return Math.ceil((s.promptLen + s.maxTokens) / 4);
  const shared = Math.floor(s.promptLen / 4);
  return shared + s.n * Math.ceil((s.promptLen - shared * 4 + s.maxTokens) / 4);
}

const alone = new Map<string, RequestOutput>();
async function aloneOutput(req: AddRequestInput): Promise<RequestOutput> {
  const key = JSON.stringify([req.promptTokenIds, req.params]);
  let out = alone.get(key);
  if (out === undefined) {
    out = (await collect(makeEngine().engine, req)).final;
    alone.set(key, out);
  }
  return out;
}

test('random workloads: batching, chunking, preemption and aborts never change outputs or leak blocks', async () => {
  await randomWorkloads(false);
});

test('the same under async scheduling: it pipelines, and changes no output', async () => {
  const pipelined = await randomWorkloads(true);
  // Steps did take their input ids from the device (the pipeline ran), not only the synchronous path.
  expect(pipelined).toBeGreaterThan(100);
});

/** Runs the property; returns how many forwards took token ids from the device. */
async function randomWorkloads(asyncScheduling: boolean): Promise<number> {
  let deviceTokenForwards = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(specArb, { minLength: 1, maxLength: 7 }),
      fc.nat(16),
      fc.integer({ min: 2, max: 24 }),
      fc.integer({ min: 3, max: 8 }),
      fc.boolean(),
      async (specs, extraBlocks, budget, maxNumSeqs, prefixCaching) => {
        const numBlocks = Math.max(...specs.map(blocksAtLongest)) + extraBlocks;
        const { engine, model } = makeEngine({
          asyncScheduling,
          model: { readsDeviceTokenIds: asyncScheduling },
          numBlocks,
          maxNumBatchedTokens: Math.max(budget, maxNumSeqs),
          maxNumSeqs,
          enablePrefixCaching: prefixCaching,
        });
        const inputs = specs.map(input);
        const results = new Map<number, Promise<RequestOutput>>();
        const start = (i: number) => {
          if (!results.has(i)) results.set(i, engine.addRequest(inputs[i]!).done());
        };
        let step = 0;
        engine.events.on('step', () => {
          step++;
          specs.forEach((s, i) => {
            if (s.arriveAtStep === step) start(i);
            if (s.abortAtStep !== undefined && s.arriveAtStep + s.abortAtStep === step) engine.abort(`q${i}`);
          });
        });
        specs.forEach((s, i) => {
          if (s.arriveAtStep === 0) start(i);
        });
        // Requests arriving after the engine went idle would never see their step: start them now.
        while (results.size < specs.length) {
          await new Promise((resolve) => setTimeout(resolve, 1));
          if (engine.stats().numRunning + engine.stats().numWaiting === 0) {
            specs.forEach((_s, i) => {
              start(i);
            });
          }
        }
        const outs = await Promise.all(specs.map((_s, i) => results.get(i)!));
        for (let i = 0; i < specs.length; i++) {
          const out = outs[i]!;
          if (out.outputs.some((o) => o.finishReason === 'abort')) continue;
          expect(tokensOf([out])).toEqual(tokensOf([await aloneOutput(inputs[i]!)]));
        }
        const s = engine.stats();
        expect(s.numFreeBlocks).toBe(s.numTotalBlocks);
        expect(s.numRunning + s.numWaiting).toBe(0);
        expect(engine.asyncScheduling).toBe(asyncScheduling);
        deviceTokenForwards += model.numDeviceTokenForwards;
      },
    ),
    { numRuns: 100 },
  );
  return deviceTokenForwards;
}
