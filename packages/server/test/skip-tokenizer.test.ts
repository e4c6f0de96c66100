// --skip-tokenizer-init (token ids in, token ids out) together with --load-format dummy (random
// weights of the config's shapes, nothing read from model.safetensors).

import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Completion, OpenAiErrorBody } from '../src/openai/types.js';
import { postJson, type RealServer, startRealServer } from './helpers/real-server.js';

let server: RealServer;
beforeAll(async () => {
  server = await startRealServer([
    '--skip-tokenizer-init',
    '--load-format',
    'dummy',
    '--generation-config',
    'vllm',
  ]);
});
afterAll(() => server.close());

test('token-id prompts get token ids back, with empty text', async () => {
  const res = await postJson(`${server.baseUrl}/v1/completions`, {
    prompt: [5, 6, 7],
    max_tokens: 3,
    temperature: 0,
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as Completion;
  expect(body.choices[0]?.token_ids).toHaveLength(3);
  expect(body.choices[0]?.text).toBe('');
  expect(body.usage?.prompt_tokens).toBe(3);
  expect(server.runtime.summary['loadFormat']).toBe('dummy');
  // --generation-config vllm: OpenAI's defaults, not the model's.
  expect(server.runtime.samplingDefaults).toEqual({});
});

test('text in or out is refused with a clear 400', async () => {
  for (const [path, body, param] of [
    ['/v1/completions', { prompt: 'text' }, 'prompt'],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }, 'messages'],
    ['/tokenize', { prompt: 'text' }, 'prompt'],
    ['/detokenize', { tokens: [1, 2] }, 'tokens'],
  ] as const) {
    const res = await postJson(`${server.baseUrl}${path}`, body);
    expect(res.status, path).toBe(400);
    const err = (await res.json()) as OpenAiErrorBody;
    expect(err.error).toMatchObject({ code: 'FS_ERR_REQUEST_NO_TOKENIZER', param });
  }
});
