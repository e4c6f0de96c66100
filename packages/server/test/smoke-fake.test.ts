import OpenAI from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { FakeEngine, fakeTokenizer } from './helpers/fake-engine.js';
import { type Listening, listen } from './helpers/listen.js';

let server: Listening;
let client: OpenAI;
beforeAll(async () => {
  server = await listen({
    engine: new FakeEngine(),
    tokenizer: fakeTokenizer,
    modelName: 'fake',
    maxModelLen: 256,
    vocabSize: 300,
    maxN: 8,
    maxLogprobs: 20,
    bodyLimit: 1 << 20,
  });
  client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'none', maxRetries: 0 });
});
afterAll(() => server.close());

test('completion', async () => {
  const c = await client.completions.create({ model: 'fake', prompt: 'hi', max_tokens: 5, n: 2 });
  console.log(JSON.stringify(c));
  const s = await client.chat.completions.create({ model: 'fake', messages: [{ role: 'user', content: 'x' }], max_tokens: 4, stream: true, stream_options: { include_usage: true }, logprobs: true });
  for await (const ch of s) console.log(JSON.stringify(ch));
  const bad = await fetch(`${server.baseUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x', temperature: 'hot' }) });
  console.log(bad.status, await bad.text());
  const bad2 = await fetch(`${server.baseUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: { a: 1 } }) });
  console.log(bad2.status, await bad2.text());
  const bad3 = await fetch(`${server.baseUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt": ' });
  console.log(bad3.status, await bad3.text());
  const bad4 = await fetch(`${server.baseUrl}/v1/nope`);
  console.log(bad4.status, await bad4.text());
  const bad5 = await fetch(`${server.baseUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x', temperature: 5 }) });
  console.log(bad5.status, await bad5.text());
  const bad6 = await fetch(`${server.baseUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [] }) });
  console.log(bad6.status, await bad6.text());
  const m = await fetch(`${server.baseUrl}/metrics`);
  console.log((await m.text()).slice(0, 1500));
  expect(c.choices.length).toBe(2);
});
