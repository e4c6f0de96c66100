// The error mapping alone, through fastify's inject (no socket): an unexpected failure is a 500 in
// OpenAI's shape whose message does not leak the detail, and 503s carry Retry-After.

import { type EngineStats, engineOverloaded } from '@flashserve/core';
import { expect, test } from 'vitest';
import { buildApp } from '../app.js';
import type { ServingEngine } from '../engine-port.js';
import type { OpenAiErrorBody } from '../openai/types.js';

const idle: EngineStats = {
  numRunning: 0,
  numWaiting: 0,
  numFreeBlocks: 1,
  numTotalBlocks: 1,
  kvCacheUsage: 0,
  prefixCacheQueries: 0,
  prefixCacheHits: 0,
  numPreemptions: 0,
  promptTokensTotal: 0,
  generationTokensTotal: 0,
};

function appWith(addRequest: ServingEngine['addRequest']) {
  const engine: ServingEngine = {
    events: { on: () => undefined, off: () => undefined },
    addRequest,
    abort: () => {},
    stats: () => idle,
    shutdown: async () => {},
  };
  return buildApp({
    engine,
    tokenizer: undefined,
    modelName: 'm',
    maxModelLen: 64,
    vocabSize: 100,
    maxN: 4,
    maxLogprobs: 5,
    bodyLimit: 1024,
  }).app;
}

test('an unexpected error is a 500 that keeps its detail out of the answer', async () => {
  const app = appWith(() => {
    throw new Error('secret internal detail');
  });
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [1, 2] } });
  expect(res.statusCode).toBe(500);
  const body = res.json<OpenAiErrorBody>();
  expect(body.error).toEqual({
    message: 'internal server error: see the server log',
    type: 'server_error',
    param: null,
    code: 'FS_ERR_SERVER_INTERNAL',
  });
  await app.close();
});

test("core's 503 passes through with Retry-After", async () => {
  const app = appWith(() => {
    throw engineOverloaded(3);
  });
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [1] } });
  expect(res.statusCode).toBe(503);
  expect(res.headers['retry-after']).toBe('1');
  expect(res.json<OpenAiErrorBody>().error.code).toBe('FS_ERR_ENGINE_OVERLOADED');
  await app.close();
});
