// --api-key on /v1 routes (and only there), and the 503 + Retry-After answer when the waiting queue
// is full, followed by full recovery.

import OpenAI, { type APIError, AuthenticationError, InternalServerError } from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { OpenAiErrorBody } from '../src/openai/types.js';
import { eventually, postJson, type RealServer, startRealServer } from './helpers/real-server.js';

describe('with --api-key', () => {
  let server: RealServer;
  beforeAll(async () => {
    server = await startRealServer(['--api-key', 'sekret']);
  });
  afterAll(() => server.close());

  const clientWith = (apiKey: string) =>
    new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey, maxRetries: 0 });

  test('a wrong or missing key gets 401 on every /v1 route', async () => {
    const err = await clientWith('wrong')
      .models.list()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as AuthenticationError).code).toBe('FS_ERR_AUTH_INVALID_KEY');
    const routes: [string, string][] = [
      ['GET', '/v1/models'],
      ['GET', `/v1/models/${server.runtime.modelName}`],
      ['POST', '/v1/completions'],
      ['POST', '/v1/chat/completions'],
    ];
    for (const [method, path] of routes) {
      const variants: Record<string, string>[] = [
        {},
        { authorization: 'Bearer nope' },
        { authorization: 'sekret' },
        { authorization: 'Basic sekret' },
      ];
      for (const headers of variants) {
        const res = await fetch(`${server.baseUrl}${path}`, {
          method,
          headers: { 'content-type': 'application/json', ...headers },
          ...(method === 'POST' ? { body: '{}' } : {}),
        });
        expect(res.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(401);
        const body = (await res.json()) as OpenAiErrorBody;
        expect(body.error.type).toBe('authentication_error');
      }
    }
  });

  test('the right key works; health, metrics and version stay open', async () => {
    const c = await clientWith('sekret').completions.create({
      model: server.runtime.modelName,
      prompt: 'x',
      max_tokens: 1,
    });
    expect(c.choices).toHaveLength(1);
    for (const path of ['/health', '/metrics', '/version'])
      expect((await fetch(`${server.baseUrl}${path}`)).status).toBe(200);
  });
});

describe('overload', () => {
  let server: RealServer;
  beforeAll(async () => {
    server = await startRealServer(['--max-num-seqs', '1', '--max-waiting-requests', '2']);
  });
  afterAll(() => server.close());

  test('past the waiting-queue limit: 503 with Retry-After, then full service again', async () => {
    const url = `${server.baseUrl}/v1/completions`;
    const controllers: AbortController[] = [];
    const long = async () => {
      const controller = new AbortController();
      controllers.push(controller);
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'busy', max_tokens: 2000, stream: true }),
        signal: controller.signal,
      });
      // The body is left unread; aborting the controller later drops the connection mid-stream.
      return res.status;
    };
    // One running, two waiting: the queue is full.
    expect(await long()).toBe(200);
    await eventually(() => server.runtime.engine.stats().numRunning === 1);
    expect(await long()).toBe(200);
    expect(await long()).toBe(200);
    await eventually(() => server.runtime.engine.stats().numWaiting === 2);
    const refused = await postJson(url, { prompt: 'one more', max_tokens: 1 });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    const body = (await refused.json()) as OpenAiErrorBody;
    expect(body.error).toMatchObject({ type: 'service_unavailable_error', code: 'FS_ERR_ENGINE_OVERLOADED' });
    const client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'x', maxRetries: 0 });
    const err = await client.completions
      .create({ model: server.runtime.modelName, prompt: 'x' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as APIError).status).toBe(503);

    for (const c of controllers) c.abort();
    await eventually(
      () => server.runtime.engine.stats().numRunning === 0 && server.runtime.engine.stats().numWaiting === 0,
    );
    const ok = await postJson(url, { prompt: 'after', max_tokens: 2 });
    expect(ok.status).toBe(200);
  });
});
