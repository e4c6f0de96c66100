// Every endpoint through the official `openai` client (or plain fetch where the client has no
// method), against the real engine serving the embedded model on a loopback port.

import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { postJson, type RealServer, startRealServer } from './helpers/real-server.js';

let server: RealServer;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  server = await startRealServer();
  client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  model = server.runtime.modelName;
});
afterAll(() => server.close());

describe('models', () => {
  test('lists the served model with its context length', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([model]);
    const card = await client.models.retrieve(model);
    expect(card).toMatchObject({ id: model, object: 'model', owned_by: 'flashserve', max_model_len: 4096 });
  });

  test("the model's generation_config.json sets the sampling defaults (vLLM's --generation-config auto)", () => {
    expect(server.runtime.samplingDefaults).toEqual({ temperature: 0.6, topP: 0.95 });
  });
});

describe('completions', () => {
  test('a text prompt, non-streaming, with usage', async () => {
    const c = await client.completions.create({ model, prompt: 'The sky is', max_tokens: 5, temperature: 0 });
    expect(c.object).toBe('text_completion');
    expect(c.id).toMatch(/^cmpl-/);
    expect(c.choices).toHaveLength(1);
    expect(c.choices[0]?.finish_reason).toBe('length');
    expect(c.usage?.completion_tokens).toBe(5);
    expect(c.usage?.total_tokens).toBe((c.usage?.prompt_tokens ?? 0) + 5);
  });

  test('a batch of prompts (text and token ids) with n = 2 numbers choices prompt-major', async () => {
    const c = await client.completions.create({
      model,
      prompt: ['one', 'two'],
      max_tokens: 2,
      n: 2,
      temperature: 1,
      seed: 3,
    });
    expect(c.choices.map((x) => x.index).sort()).toEqual([0, 1, 2, 3]);
    expect(c.usage?.completion_tokens).toBe(8);
    const ids = await client.completions.create({
      model,
      prompt: [
        [100, 200, 300],
        [400, 500],
      ],
      max_tokens: 2,
    });
    expect(ids.choices).toHaveLength(2);
    expect(ids.usage?.prompt_tokens).toBe(5);
  });

  test('greedy decoding is deterministic and a seed reproduces sampling', async () => {
    const ask = (seed: number | undefined, temperature: number) =>
      client.completions.create({
        model,
        prompt: 'Once upon a time',
        max_tokens: 6,
        temperature,
        ...(seed === undefined ? {} : { seed }),
      });
    const [g1, g2] = await Promise.all([ask(undefined, 0), ask(undefined, 0)]);
    expect(g1.choices[0]?.text).toBe(g2.choices[0]?.text);
    const [s1, s2, s3] = await Promise.all([ask(42, 1), ask(42, 1), ask(43, 1)]);
    expect(s1.choices[0]?.text).toBe(s2.choices[0]?.text);
    expect(s1.choices[0]?.text).not.toBe(s3.choices[0]?.text);
  });

  test('n > 1 gives n choices; with a seed they differ from each other but repeat across calls', async () => {
    const ask = () =>
      client.completions.create({ model, prompt: 'Hello', max_tokens: 4, n: 3, temperature: 1, seed: 7 });
    const [a, b] = await Promise.all([ask(), ask()]);
    expect(a.choices).toHaveLength(3);
    expect(new Set(a.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    expect(a.choices.map((c) => c.text)).toEqual(b.choices.map((c) => c.text));
  });

  test('a stop string ends the choice and is not emitted', async () => {
    const greedy = await client.completions.create({
      model,
      prompt: 'Hello there',
      max_tokens: 8,
      temperature: 0,
    });
    const text = greedy.choices[0]?.text ?? '';
    // Stop on the text the model will produce at its third character: generation must end before it.
    const stop = text.slice(2, 4);
    expect(stop.length).toBe(2);
    const stopped = await client.completions.create({
      model,
      prompt: 'Hello there',
      max_tokens: 8,
      temperature: 0,
      stop: [stop],
    });
    const choice = stopped.choices[0];
    expect(choice?.finish_reason).toBe('stop');
    expect(choice?.text).toBe(text.slice(0, text.indexOf(stop)));
    expect((choice as unknown as { stop_reason: string }).stop_reason).toBe(stop);
  });

  test('echo prepends the prompt; logprobs come per token with alternatives', async () => {
    const echo = await client.completions.create({
      model,
      prompt: 'Echo me',
      max_tokens: 2,
      echo: true,
      temperature: 0,
    });
    expect(echo.choices[0]?.text.startsWith('Echo me')).toBe(true);
    const lp = await client.completions.create({
      model,
      prompt: 'Log',
      max_tokens: 3,
      logprobs: 2,
      temperature: 0,
    });
    const logprobs = lp.choices[0]?.logprobs;
    expect(logprobs?.tokens).toHaveLength(3);
    expect(logprobs?.token_logprobs?.every((x) => x <= 0)).toBe(true);
    expect(Object.keys(logprobs?.top_logprobs?.[0] ?? {}).length).toBeGreaterThanOrEqual(2);
    expect(logprobs?.text_offset?.[0]).toBe(0);
  });

  test('echo with logprobs: the prompt tokens lead, the first with null, each as the model scores it', async () => {
    const promptIds = [1000, 2000, 3000, 4000];
    const first = await client.completions.create({
      model,
      prompt: promptIds,
      max_tokens: 1,
      temperature: 0,
      logprobs: 2,
      return_token_ids: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    const next = (first.choices[0] as unknown as { token_ids: number[] }).token_ids[0]!;
    const nextLogprob = first.choices[0]!.logprobs!.token_logprobs![0]!;
    // Scored as a prompt token, the greedy token must get the logprob it was sampled with.
    const echoBody: OpenAI.CompletionCreateParamsNonStreaming = {
      model,
      prompt: [...promptIds, next],
      max_tokens: 2,
      temperature: 0,
      logprobs: 2,
      echo: true,
    };
    const echoed = await client.completions.create(echoBody);
    const lp = echoed.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(promptIds.length + 1 + 2);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.top_logprobs![0]).toBeNull();
    expect(lp.token_logprobs![promptIds.length]).toBeCloseTo(nextLogprob, 4);
    for (let i = 1; i < lp.tokens!.length; i++) {
      expect(lp.token_logprobs![i]!).toBeLessThanOrEqual(0);
      expect(Object.keys(lp.top_logprobs![i]!).length).toBeGreaterThanOrEqual(2);
      expect(lp.text_offset![i]!).toBeGreaterThanOrEqual(lp.text_offset![i - 1]!);
    }
    // Streamed, the first chunk carries the echoed prompt's logprobs; the tokens add up the same.
    const stream = await client.completions.create({ ...echoBody, stream: true });
    const streamed: (number | null)[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.token_logprobs ?? []));
    expect(streamed).toEqual(lp.token_logprobs);
  });

  test('logit_bias: -100 bans the greedy token, +100 forces one; logprobs stay those of the raw logits', async () => {
    const body = {
      model,
      prompt: [1000, 2000, 3000],
      max_tokens: 4,
      temperature: 0,
      logprobs: 1,
      return_token_ids: true,
    } as OpenAI.CompletionCreateParamsNonStreaming;
    const ids = (c: OpenAI.Completion) => (c.choices[0] as unknown as { token_ids: number[] }).token_ids;
    const plain = await client.completions.create(body);
    const greedy = ids(plain)[0]!;
    const banned = await client.completions.create({ ...body, logit_bias: { [String(greedy)]: -100 } });
    expect(ids(banned)[0]).not.toBe(greedy);
    expect(ids(banned)).not.toContain(greedy);
    // The first token is sampled from the same logits: its raw logprob is reported, not the biased one.
    const bannedTop = banned.choices[0]!.logprobs!.top_logprobs![0]!;
    expect(Object.values(bannedTop)[0]).toBeCloseTo(plain.choices[0]!.logprobs!.token_logprobs![0]!, 4);
    // A +100 bias wins at any temperature; in chat too.
    const forced = await client.completions.create({
      ...body,
      temperature: 1,
      seed: 7,
      logit_bias: { '4242': 100 },
    });
    expect(ids(forced)).toEqual([4242, 4242, 4242, 4242]);
    const chat = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 3,
      logit_bias: { '4242': 100 },
      return_token_ids: true,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect((chat.choices[0] as unknown as { token_ids: number[] }).token_ids).toEqual([4242, 4242, 4242]);
  });

  test("prompt_logprobs (vLLM's field) on completions and chat", async () => {
    type WithPrompt = { prompt_logprobs: (Record<string, { logprob: number; rank: number }> | null)[] };
    const promptIds = [11, 22, 33, 44, 55];
    const c = await client.completions.create({
      model,
      prompt: promptIds,
      max_tokens: 1,
      prompt_logprobs: 3,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    const entries = (c.choices[0] as unknown as WithPrompt).prompt_logprobs;
    expect(entries).toHaveLength(promptIds.length);
    expect(entries[0]).toBeNull();
    for (let i = 1; i < promptIds.length; i++) {
      const e = entries[i]!;
      const own = e[String(promptIds[i])]!;
      expect(own.rank).toBeGreaterThanOrEqual(1);
      expect(own.logprob).toBeLessThanOrEqual(0);
      expect(Object.keys(e).length).toBeGreaterThanOrEqual(3);
      expect(Object.keys(e).length).toBeLessThanOrEqual(4);
      const best = Math.max(...Object.values(e).map((x) => x.logprob));
      expect(own.logprob === best).toBe(own.rank === 1);
    }
    const chat = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Score my prompt' }],
      max_tokens: 1,
      prompt_logprobs: 0,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const chatEntries = (chat as unknown as WithPrompt).prompt_logprobs;
    expect(chatEntries.length).toBe(chat.usage?.prompt_tokens);
    expect(chatEntries[0]).toBeNull();
    expect(chatEntries.slice(1).every((e) => e !== null && Object.keys(e).length === 1)).toBe(true);
  });

  test('streaming: chunks add up to the non-streamed text; usage comes last when asked', async () => {
    const params = { model, prompt: 'Stream this', max_tokens: 6, temperature: 0 } as const;
    const whole = await client.completions.create(params);
    const stream = await client.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.text;
        finish = c.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0]?.text);
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(6);
  });

  test('the raw stream ends with data: [DONE]', async () => {
    const res = await postJson(`${server.baseUrl}/v1/completions`, {
      prompt: 'x',
      max_tokens: 2,
      stream: true,
    });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const body = await res.text();
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });
});

describe('chat completions', () => {
  const messages: OpenAI.ChatCompletionMessageParam[] = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: [{ type: 'text', text: 'Say hi.' }] },
  ];

  test('non-streaming with usage and n = 2', async () => {
    const c = await client.chat.completions.create({ model, messages, max_tokens: 4, n: 2, seed: 1 });
    expect(c.object).toBe('chat.completion');
    expect(c.choices).toHaveLength(2);
    expect(c.choices[0]?.message.role).toBe('assistant');
    expect(c.usage?.completion_tokens).toBe(8);
    // The template renders BOS, the system prompt and the turn markers: more tokens than the words.
    expect(c.usage?.prompt_tokens).toBeGreaterThan(6);
  });

  test('max_completion_tokens wins over max_tokens', async () => {
    const c = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 6,
      max_completion_tokens: 2,
    });
    expect(c.usage?.completion_tokens).toBe(2);
  });

  test("continuous_usage_stats (vLLM's): every chunk carries its choice's usage so far", async () => {
    const body = {
      model,
      max_tokens: 4,
      temperature: 0,
      n: 2,
      stream: true as const,
      stream_options: { include_usage: true, continuous_usage_stats: true },
      return_token_ids: true,
    };
    // Chat: the role chunks count no completion token; each content chunk its choice's tokens so far.
    const chat = await client.chat.completions.create({
      ...body,
      messages,
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    const seen = new Map<number, number>();
    let prompt = -1;
    let chunks = 0;
    for await (const chunk of chat) {
      chunks++;
      const u = chunk.usage!;
      expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
      if (chunk.choices.length === 0) {
        expect(u.completion_tokens).toBe(8); // the last chunk: the whole request (n = 2)
        continue;
      }
      if (prompt < 0) prompt = u.prompt_tokens;
      expect(u.prompt_tokens).toBe(prompt);
      const c = chunk.choices[0]!;
      const ids = (c as unknown as { token_ids?: number[] }).token_ids ?? [];
      seen.set(c.index, (seen.get(c.index) ?? 0) + ids.length);
      expect(u.completion_tokens).toBe(seen.get(c.index));
    }
    expect(chunks).toBeGreaterThan(4);
    expect([...seen.values()]).toEqual([4, 4]);
    // Completions, two prompts: each chunk its own prompt's tokens.
    const completion = await client.completions.create({
      ...body,
      prompt: [[1000, 2000, 3000], [4000]],
    } as OpenAI.CompletionCreateParamsStreaming);
    const byChoice = new Map<number, number>();
    for await (const chunk of completion) {
      const u = chunk.usage!;
      if (chunk.choices.length === 0) {
        expect(u).toMatchObject({ prompt_tokens: 4, completion_tokens: 16 });
        continue;
      }
      const c = chunk.choices[0]!;
      expect(u.prompt_tokens).toBe(c.index < 2 ? 3 : 1);
      const ids = (c as unknown as { token_ids?: number[] }).token_ids ?? [];
      byChoice.set(c.index, (byChoice.get(c.index) ?? 0) + ids.length);
      expect(u.completion_tokens).toBe(byChoice.get(c.index));
    }
    expect([...byChoice.keys()].sort()).toEqual([0, 1, 2, 3]);
  });

  test('streaming: a role delta first, content deltas, finish reason, usage', async () => {
    const stream = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 4,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    const finishes = chunks.flatMap((c) => c.choices.map((x) => x.finish_reason)).filter((f) => f !== null);
    expect(finishes).toEqual(['length']);
    expect(chunks.at(-1)?.choices).toEqual([]);
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(4);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    const whole = await client.chat.completions.create({ model, messages, max_tokens: 4, temperature: 0 });
    expect(text).toBe(whole.choices[0]?.message.content);
  });

  test('logprobs with top_logprobs', async () => {
    const c = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 3,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = c.choices[0]?.logprobs?.content ?? [];
    expect(content).toHaveLength(3);
    expect(content[0]?.top_logprobs).toHaveLength(3);
    expect(Buffer.from(content[0]?.bytes ?? []).toString('utf8')).toBe(content[0]?.token);
  });
});

describe('tokenizer routes, health, version, metrics', () => {
  test('tokenize and detokenize round-trip', async () => {
    const tok = (await (await postJson(`${server.baseUrl}/tokenize`, { prompt: 'Hello world' })).json()) as {
      tokens: number[];
      count: number;
      max_model_len: number;
    };
    expect(tok.count).toBe(tok.tokens.length);
    expect(tok.max_model_len).toBe(4096);
    const detok = (await (await postJson(`${server.baseUrl}/detokenize`, { tokens: tok.tokens })).json()) as {
      prompt: string;
    };
    expect(detok.prompt).toContain('Hello world');
    const chat = (await (
      await postJson(`${server.baseUrl}/tokenize`, { messages: [{ role: 'user', content: 'hi' }] })
    ).json()) as { tokens: number[] };
    expect(chat.tokens.length).toBeGreaterThan(2);
  });

  test('health and version', async () => {
    expect((await fetch(`${server.baseUrl}/health`)).status).toBe(200);
    expect(await (await fetch(`${server.baseUrl}/version`)).json()).toEqual({ version: expect.any(String) });
  });

  test('metrics use vLLM names with the flashserve prefix', async () => {
    await client.completions.create({ model, prompt: 'metrics', max_tokens: 3 });
    const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
    for (const name of [
      'flashserve:num_requests_running',
      'flashserve:num_requests_waiting',
      'flashserve:kv_cache_usage_perc',
      'flashserve:prefix_cache_queries',
      'flashserve:prefix_cache_hits',
      'flashserve:prompt_tokens_total',
      'flashserve:generation_tokens_total',
      'flashserve:num_preemptions_total',
      'flashserve:time_to_first_token_seconds_bucket',
      'flashserve:inter_token_latency_seconds_bucket',
      'flashserve:e2e_request_latency_seconds_count',
      'flashserve:request_success_total{',
    ]) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/flashserve:request_success_total\{[^}]*finished_reason="length"[^}]*\} [1-9]/);
    expect(text).toMatch(/flashserve:generation_tokens_total\{[^}]*\} [1-9]/);
  });
});
