// --tensor-parallel-size through the whole server: the embedded model split over two ranks answers
// exactly what one rank answers (greedy), and the worker threads stop with the server. A rank that
// dies mid-request fails that request with the reason and the server shuts itself down.

import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { bundleWorker } from '../../../test-support/bundle-worker.js';
import { type ServeHandle, serve } from '../src/cli/serve.js';
import { resolveServeConfig } from '../src/config.js';
import { type RealServer, startRealServer, testEnv } from './helpers/real-server.js';

let single: RealServer;
let split: RealServer;
beforeAll(async () => {
  // Async scheduling forced on (on the CPU it is off unless asked for).
  single = await startRealServer(['--generation-config', 'vllm', '--async-scheduling']);
  split = await startRealServer(['--generation-config', 'vllm', '--tensor-parallel-size', '2']);
});
afterAll(async () => {
  await single?.close();
  await split?.close();
});

test('TP=2 gives the same greedy completion as TP=1', async () => {
  expect(split.runtime.summary['tensorParallelSize']).toBe(2);
  // One device pipelines its steps (async scheduling, asked for); the TP group cannot (its embedding
  // maps token ids on the host), so this also compares the two schedules.
  expect(single.runtime.summary['asyncScheduling']).toBe('on');
  expect(split.runtime.summary['asyncScheduling']).toBe('off');
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

test('a worker rank that dies mid-request fails that request with the reason, and the server shuts itself down', async () => {
  // The models package's fault-injecting worker: rank 1 exits its thread (code 7) at its 4th forward.
  const entry = bundleWorker(
    fileURLToPath(new URL('../../models/test/support/tp-faulty-worker.ts', import.meta.url)),
  );
  const env = { ...testEnv(), FLASHSERVE_TP_WORKER_ENTRY: fileURLToPath(entry) };
  const config = resolveServeConfig(
    ['--tensor-parallel-size', '2', '--host', '127.0.0.1', '--port', '0', '--log-level', 'silent'],
    env,
  );
  // Worker threads take their environment from process.env when they start.
  process.env.FLASHSERVE_TEST_TP_FAULT = 'exit:1:4';
  let handle: ServeHandle;
  try {
    handle = await serve(config, env);
  } finally {
    delete process.env.FLASHSERVE_TEST_TP_FAULT;
  }
  try {
    const client = new OpenAI({ baseURL: `${handle.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const model = (await client.models.list()).data[0]!.id;
    const err = await client.completions
      .create({ model, prompt: 'The quick brown fox', max_tokens: 12, temperature: 0 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect((err as Error).message).toMatch(/worker rank 1 exited with code 7/);
    // The server notices the broken group, drains and closes: the CLI then exits 1.
    await expect(handle.failed).resolves.toMatch(/worker rank 1 exited with code 7/);
    await expect(fetch(`${handle.url}/health`)).rejects.toThrow();
  } finally {
    await handle.shutdown('test over');
  }
});
