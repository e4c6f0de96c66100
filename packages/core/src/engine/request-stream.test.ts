import { expect, test } from 'vitest';
import type { RequestOutput } from './protocol.js';
import { RequestStream } from './request-stream.js';

function out(step: number, finished = false): RequestOutput {
  const tokenIds = Array.from({ length: step }, (_, i) => i + 1);
  return {
    requestId: 'r',
    promptTokenIds: [0],
    outputs: [
      {
        index: 0,
        tokenIds,
        text: tokenIds.join(','),
        newTokenIds: [step],
        newText: `,${step}`,
        logprobs: [{ tokenId: step, logprob: -step, topLogprobs: [] }],
        finishReason: finished ? 'length' : null,
      },
    ],
    finished,
    metrics: { arrivalTime: 0, numCachedPromptTokens: 0 },
  };
}

test('outputs a reader has not taken yet are merged into one', async () => {
  let aborted = 0;
  const s = new RequestStream('r', () => aborted++);
  for (let i = 1; i <= 4; i++) s.push(out(i, i === 4));
  const got: RequestOutput[] = [];
  for await (const o of s) got.push(o);
  expect(got).toHaveLength(1);
  const c = got[0]!.outputs[0]!;
  expect(c.newTokenIds).toEqual([1, 2, 3, 4]);
  expect(c.newText).toBe(',1,2,3,4');
  expect(c.logprobs!.map((l) => l.tokenId)).toEqual([1, 2, 3, 4]);
  expect(c.tokenIds).toEqual([1, 2, 3, 4]);
  expect(got[0]!.finished).toBe(true);
  expect(aborted).toBe(0);
  expect((await s.done()).finished).toBe(true);
});

test('a second iteration is refused; breaking out early aborts', async () => {
  let aborted = 0;
  const s = new RequestStream('r', () => aborted++);
  s.push(out(1));
  for await (const _ of s) break;
  expect(aborted).toBe(1);
  await expect(async () => {
    for await (const _ of s);
  }).rejects.toThrow(/only once/);
});

test('a failed request rejects done() and throws from the iterator, without an unhandled rejection', async () => {
  const s = new RequestStream('r', () => {});
  const failed = { ...out(1, true), error: new Error('boom') };
  s.push(failed);
  await expect(s.done()).rejects.toThrow('boom');
  await expect(async () => {
    for await (const _ of s);
  }).rejects.toThrow('boom');
});
