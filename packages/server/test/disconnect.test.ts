// A client that goes away mid-request aborts its engine request, and the KV blocks come back: read
// from the engine's own counters, not assumed.

import { request } from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { eventually, postJson, type RealServer, startRealServer } from './helpers/real-server.js';

let server: RealServer;
let client: OpenAI;
let freeAtStart: number;

beforeAll(async () => {
  server = await startRealServer(['--no-enable-prefix-caching']);
  client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  freeAtStart = server.runtime.engine.stats().numFreeBlocks;
});
afterAll(() => server.close());

const stats = () => server.runtime.engine.stats();
// A prompt of several blocks, so a leak would show.
const longPrompt = 'the quick brown fox jumps over the lazy dog '.repeat(12);

test('breaking out of an official-client stream aborts the request and frees its blocks', async () => {
  const stream = await client.completions.create({
    model: server.runtime.modelName,
    prompt: longPrompt,
    max_tokens: 1000,
    stream: true,
  });
  let chunks = 0;
  for await (const _ of stream) {
    if (++chunks === 3) {
      // Mid-stream, the request holds blocks.
      expect(stats().numFreeBlocks).toBeLessThan(freeAtStart);
      expect(stats().numRunning).toBe(1);
      break;
    }
  }
  await eventually(() => stats().numRunning === 0 && stats().numFreeBlocks === freeAtStart);
  expect(stats().numWaiting).toBe(0);
});

test('a socket destroyed mid-stream (raw HTTP) frees the blocks too', async () => {
  const url = new URL('/v1/chat/completions', server.baseUrl);
  const body = JSON.stringify({
    messages: [{ role: 'user', content: longPrompt }],
    max_tokens: 1000,
    stream: true,
  });
  await new Promise<void>((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
        if (bytes > 600) {
          req.destroy();
          resolve();
        }
      });
      res.on('error', () => {});
    });
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
    });
    req.end(body);
  });
  await eventually(() => stats().numRunning === 0 && stats().numFreeBlocks === freeAtStart);
});

test('a non-streaming request whose client gives up is aborted as well', async () => {
  const controller = new AbortController();
  const pending = fetch(`${server.baseUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: longPrompt, max_tokens: 1000 }),
    signal: controller.signal,
  }).catch(() => undefined);
  await eventually(() => stats().numRunning === 1);
  controller.abort();
  await pending;
  await eventually(() => stats().numRunning === 0 && stats().numFreeBlocks === freeAtStart);
});

test('the server keeps serving after the disconnects', async () => {
  const res = await postJson(`${server.baseUrl}/v1/completions`, { prompt: 'still here', max_tokens: 2 });
  expect(res.status).toBe(200);
  expect(stats().numFreeBlocks).toBe(freeAtStart);
});
