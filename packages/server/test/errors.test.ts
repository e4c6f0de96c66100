// Every error case the server answers, with its status and OpenAI's error shape, through the official
// client where it can send the request and plain fetch where it cannot (bad JSON, wrong types).

import { connect } from 'node:net';
import OpenAI, { BadRequestError, NotFoundError } from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { OpenAiErrorBody } from '../src/openai/types.js';
import { postJson, type RealServer, startRealServer } from './helpers/real-server.js';

let server: RealServer;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  server = await startRealServer([
    '--max-model-len',
    '64',
    '--max-num-seqs',
    '4',
    '--max-request-body-size',
    '64KiB',
  ]);
  client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  model = server.runtime.modelName;
});
afterAll(() => server.close());

async function expectError(
  res: Response,
  status: number,
  expected: { code: string; type?: string; param?: string | null; message?: RegExp },
): Promise<OpenAiErrorBody> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/json');
  const body = (await res.json()) as OpenAiErrorBody;
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(body.error.code).toBe(expected.code);
  if (expected.type) expect(body.error.type).toBe(expected.type);
  if (expected.param !== undefined) expect(body.error.param).toBe(expected.param);
  if (expected.message) expect(body.error.message).toMatch(expected.message);
  return body;
}

const completions = () => `${server.baseUrl}/v1/completions`;
const chat = () => `${server.baseUrl}/v1/chat/completions`;

describe('400: schema validation names the field', () => {
  const cases: [string, () => string, unknown, string][] = [
    ['wrong type', completions, { prompt: 'x', temperature: 'hot' }, 'temperature'],
    ['out of range', completions, { prompt: 'x', temperature: 3 }, 'temperature'],
    ['negative max_tokens', completions, { prompt: 'x', max_tokens: -1 }, 'max_tokens'],
    ['huge number', completions, { prompt: 'x', max_tokens: 1e308 }, 'max_tokens'],
    ['n above --max-num-seqs', completions, { prompt: 'x', n: 5 }, 'n'],
    ['missing prompt', completions, { max_tokens: 1 }, 'prompt'],
    ['prompt of the wrong shape', completions, { prompt: { text: 'x' } }, 'prompt'],
    ['token id outside the vocabulary', completions, { prompt: [1, 10_000_000] }, 'prompt'],
    ['stop of the wrong shape', completions, { prompt: 'x', stop: [1] }, 'stop'],
    ['empty messages', chat, { messages: [] }, 'messages'],
    ['unknown role', chat, { messages: [{ role: 'robot', content: 'x' }] }, 'messages[0].role'],
    ['content of the wrong type', chat, { messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    ['missing content', chat, { messages: [{ role: 'user' }] }, 'messages[0].content'],
    [
      'top_logprobs without logprobs',
      chat,
      { messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 },
      'top_logprobs',
    ],
    ['logprobs above the limit', completions, { prompt: 'x', logprobs: 21 }, 'logprobs'],
    ['logit_bias key not a token id', completions, { prompt: 'x', logit_bias: { abc: 5 } }, 'logit_bias'],
    ['logit_bias above 100', completions, { prompt: 'x', logit_bias: { '5': 101 } }, 'logit_bias[5]'],
    [
      'logit_bias of the wrong type',
      chat,
      { messages: [{ role: 'user', content: 'x' }], logit_bias: [1] },
      'logit_bias',
    ],
    ['body not an object', completions, [1, 2, 3], ''],
  ];
  for (const [name, url, body, param] of cases) {
    test(name, async () => {
      await expectError(await postJson(url(), body), 400, {
        code: 'FS_ERR_REQUEST_INVALID',
        type: 'invalid_request_error',
        param: param === '' ? null : param,
      });
    });
  }

  test('the official client surfaces them as BadRequestError with param', async () => {
    const err = await client.completions
      .create({ model, prompt: 'x', temperature: 9 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).param).toBe('temperature');
    expect((err as BadRequestError).code).toBe('FS_ERR_REQUEST_INVALID');
  });
});

describe('400: logit_bias says which key is wrong', () => {
  test('a key that is no token id, and one outside the vocabulary', async () => {
    await expectError(await postJson(completions(), { prompt: 'x', logit_bias: { abc: 5 } }), 400, {
      code: 'FS_ERR_REQUEST_INVALID',
      param: 'logit_bias',
      message: /logit_bias key "abc" is not a token id/,
    });
    await expectError(await postJson(completions(), { prompt: 'x', logit_bias: { '10000000': 1 } }), 400, {
      code: 'FS_ERR_REQUEST_PARAM_INVALID',
      param: 'logit_bias',
      message: /token id 10000000 is outside the vocabulary/,
    });
  });
});

describe('400: bodies that are not JSON, and prompts that are too long', () => {
  test('malformed JSON', async () => {
    await expectError(await postJson(completions(), '{"prompt": '), 400, {
      code: 'FS_ERR_REQUEST_INVALID_JSON',
    });
  });
  test('empty body', async () => {
    await expectError(await postJson(completions(), ''), 400, { code: 'FS_ERR_REQUEST_INVALID_JSON' });
  });
  test('prompt plus max_tokens beyond --max-model-len', async () => {
    const prompt = 'word '.repeat(80);
    const body = await expectError(await postJson(completions(), { prompt, max_tokens: 4 }), 400, {
      code: 'FS_ERR_REQUEST_PROMPT_TOO_LONG',
      param: 'prompt',
      message: /maximum context length is 64 tokens/,
    });
    expect(body.error.type).toBe('invalid_request_error');
    const err = await client.chat.completions
      .create({ model, messages: [{ role: 'user', content: prompt }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).param).toBe('messages');
  });
  test('prompt_logprobs: out of range, or with stream, is a 400 naming it', async () => {
    const bad = await postJson(completions(), { prompt: 'x', prompt_logprobs: 21 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('prompt_logprobs');
    await expectError(await postJson(completions(), { prompt: 'x', prompt_logprobs: 1, stream: true }), 400, {
      code: 'FS_ERR_REQUEST_INVALID',
      param: 'prompt_logprobs',
      message: /not supported when streaming/,
    });
  });
});

describe('other statuses', () => {
  test('404 for an unknown model', async () => {
    const err = await client.completions.create({ model: 'gpt-9', prompt: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).code).toBe('FS_ERR_MODEL_NOT_FOUND');
    await expectError(await fetch(`${server.baseUrl}/v1/models/gpt-9`), 404, {
      code: 'FS_ERR_MODEL_NOT_FOUND',
      param: 'model',
    });
  });
  test('404 for an unknown route', async () => {
    await expectError(await fetch(`${server.baseUrl}/v1/engines`), 404, {
      code: 'FS_ERR_ROUTE_NOT_FOUND',
      type: 'not_found_error',
    });
    await expectError(await fetch(`${server.baseUrl}/v1/completions`), 404, {
      code: 'FS_ERR_ROUTE_NOT_FOUND',
    });
  });
  test('413 for a body over --max-request-body-size', async () => {
    const res = await postJson(completions(), { prompt: 'x'.repeat(70 * 1024) });
    await expectError(res, 413, { code: 'FS_ERR_REQUEST_TOO_LARGE' });
  });
  test('400 for a URL that cannot be decoded, and for bytes that are not HTTP', async () => {
    await expectError(await fetch(`${server.baseUrl}/v1/models/%ZZ`), 400, {
      code: 'FS_ERR_REQUEST_MALFORMED_HTTP',
    });
    const raw = await new Promise<string>((resolve) => {
      const socket = connect(Number(new URL(server.baseUrl).port), '127.0.0.1', () =>
        socket.write('HELLO\r\n\r\n'),
      );
      let text = '';
      socket.on('data', (d) => {
        text += d.toString('utf8');
      });
      socket.on('close', () => resolve(text));
    });
    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as OpenAiErrorBody;
    expect(body.error.code).toBe('FS_ERR_REQUEST_MALFORMED_HTTP');
  });
  test('415 for a body that is not JSON', async () => {
    const res = await fetch(completions(), {
      method: 'POST',
      headers: { 'content-type': 'application/xml' },
      body: '<a/>',
    });
    await expectError(res, 415, { code: 'FS_ERR_REQUEST_CONTENT_TYPE' });
  });
});
