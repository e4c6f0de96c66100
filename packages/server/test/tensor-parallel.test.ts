// --tensor-parallel-size through the whole server: the embedded model split over two ranks answers
// exactly what one rank answers (greedy), and the worker threads stop with the server.

import OpenAI from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RealServer, startRealServer } from './helpers/real-server.js';

let single: RealServer;
let split: RealServer;
beforeAll(async () => {
  single = await startRealServer(['--generation-config', 'vllm']);
  split = await startRealServer(['--generation-config', 'vllm', '--tensor-parallel-size', '2']);
});
afterAll(async () => {
  await single?.close();
  await split?.close();
});

test('TP=2 gives the same greedy completion as TP=1', async () => {
  expect(split.runtime.summary['tensorParallelSize']).toBe(2);
  const ask = (s: RealServer) =>
    new OpenAI({ baseURL: `${s.baseUrl}/v1`, apiKey: 'unused' }).completions.create({
      model: s.runtime.modelName,
      prompt: 'The quick brown fox',
      max_tokens: 8,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);
  const [a, b] = await Promise.all([ask(single), ask(split)]);
  expect(b.choices[0]?.text).toBe(a.choices[0]?.text);
  expect(b.usage?.completion_tokens).toBe(8);
});
