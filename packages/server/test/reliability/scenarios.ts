// The reliability scenarios, each bounded in count and time and talking only to 127.0.0.1. Each
// returns its figures; the caller checks them and prints the summary. Sizes come from the caller so
// the same code runs scaled down in CI and at full size from one command.

import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { expect } from 'vitest';
import type { OpenAiErrorBody } from '../../src/openai/types.js';
import { eventually, type RealServer } from '../helpers/real-server.js';
import { type Endpoint, type HostileBody, hostileBodies } from './hostile-bodies.js';

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at once. */
export async function pool<T>(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

interface StreamResult {
  readonly status: number;
  readonly tokens: number;
  readonly usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  readonly finish?: string | null;
  readonly done: boolean;
}

/** One streamed completion, counting the token ids the stream carried. */
async function streamCompletion(baseUrl: string, prompt: string, maxTokens: number): Promise<StreamResult> {
  const res = await fetch(`${baseUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      prompt,
      max_tokens: maxTokens,
      ignore_eos: true,
      stream: true,
      return_token_ids: true,
      stream_options: { include_usage: true },
    }),
  });
  if (res.status !== 200) return { status: res.status, tokens: 0, done: false };
  const text = await res.text();
  let tokens = 0;
  let usage: StreamResult['usage'];
  let finish: string | null | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const chunk = JSON.parse(line.slice(6)) as {
      choices: { token_ids?: number[]; finish_reason: string | null }[];
      usage?: StreamResult['usage'] | null;
    };
    for (const c of chunk.choices) {
      tokens += c.token_ids?.length ?? 0;
      finish = c.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  return { status: 200, tokens, usage, finish, done: text.trimEnd().endsWith('data: [DONE]') };
}

/** Free blocks and idle engine, reached again after the scenario (read from the engine). */
async function expectNoLeak(server: RealServer, freeAtStart: number): Promise<number> {
  const stats = () => server.runtime.engine.stats();
  await eventually(
    () => stats().numRunning === 0 && stats().numWaiting === 0 && stats().numFreeBlocks === freeAtStart,
    30_000,
  ).catch(() => undefined);
  return freeAtStart - stats().numFreeBlocks;
}

export interface LoadFigures {
  readonly requests: number;
  readonly completed: number;
  readonly tokens: number;
  readonly seconds: number;
  readonly blocksLeaked: number;
}

/** Streaming requests at a concurrency: all complete, usage adds up, blocks return. */
export async function loadScenario(
  server: RealServer,
  requests: number,
  concurrency: number,
): Promise<LoadFigures> {
  const freeAtStart = server.runtime.engine.stats().numFreeBlocks;
  const generatedBefore = server.runtime.engine.stats().generationTokensTotal;
  const started = Date.now();
  const results = await pool(requests, concurrency, (i) =>
    streamCompletion(server.baseUrl, `request ${i}: ${'lorem ipsum '.repeat(i % 7)}`, 2 + (i % 3)),
  );
  let completed = 0;
  let tokens = 0;
  results.forEach((r, i) => {
    const maxTokens = 2 + (i % 3);
    expect(r.status, `request ${i}`).toBe(200);
    expect(r.done, `request ${i} ended with [DONE]`).toBe(true);
    expect(r.finish).toBe('length');
    expect(r.tokens).toBe(maxTokens);
    expect(r.usage?.completion_tokens).toBe(maxTokens);
    expect(r.usage?.total_tokens).toBe((r.usage?.prompt_tokens ?? 0) + maxTokens);
    completed++;
    tokens += r.tokens;
  });
  // The engine generated exactly what the clients received.
  expect(server.runtime.engine.stats().generationTokensTotal - generatedBefore).toBe(tokens);
  const seconds = (Date.now() - started) / 1000;
  return { requests, completed, tokens, seconds, blocksLeaked: await expectNoLeak(server, freeAtStart) };
}

export interface FaultFigures {
  readonly faults: number;
  readonly byKind: Record<string, number>;
  readonly blocksLeaked: number;
}

type FaultKind = 'before headers' | 'mid body' | 'mid prefill' | 'mid stream';
const FAULT_KINDS: FaultKind[] = ['before headers', 'mid body', 'mid prefill', 'mid stream'];

/** Opens a raw connection, sends part or all of a streaming request, and drops the connection at
 * the chosen point. Resolves once the socket is gone. */
function faultyClient(
  port: number,
  kind: FaultKind,
  delayMs: number,
  chunksBeforeDrop: number,
): Promise<void> {
  const body = JSON.stringify({ prompt: 'fault injection '.repeat(10), max_tokens: 200, stream: true });
  const head =
    'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1');
    const drop = () => {
      socket.destroy();
    };
    const guard = setTimeout(drop, 20_000);
    socket.on('close', () => {
      clearTimeout(guard);
      resolve();
    });
    socket.on('error', () => {});
    socket.on('connect', () => {
      if (kind === 'before headers') {
        socket.write(head.slice(0, Math.max(1, Math.floor(head.length * Math.random()))));
        setTimeout(drop, delayMs);
      } else if (kind === 'mid body') {
        socket.write(head + body.slice(0, Math.floor(body.length / 2)));
        setTimeout(drop, delayMs);
      } else if (kind === 'mid prefill') {
        socket.write(head + body);
        setTimeout(drop, delayMs);
      } else {
        socket.write(head + body);
        let events = 0;
        socket.on('data', (d: Buffer) => {
          events += d.toString('utf8').split('data: ').length - 1;
          if (events > chunksBeforeDrop) drop();
        });
      }
    });
  });
}

/** Clients that disconnect at random points; the server keeps serving and leaks nothing. */
export async function faultScenario(server: RealServer, faults: number, seed: number): Promise<FaultFigures> {
  const freeAtStart = server.runtime.engine.stats().numFreeBlocks;
  const port = Number(new URL(server.baseUrl).port);
  const plan = fc.sample(
    fc.record({
      kind: fc.constantFrom(...FAULT_KINDS),
      delayMs: fc.integer({ min: 0, max: 60 }),
      chunks: fc.integer({ min: 1, max: 6 }),
    }),
    { numRuns: faults, seed },
  );
  const byKind: Record<string, number> = {};
  // Healthy traffic runs alongside the faults and must be unaffected.
  const healthy = pool(Math.max(4, Math.floor(faults / 20)), 2, () =>
    streamCompletion(server.baseUrl, 'healthy', 3),
  );
  await pool(plan.length, 16, async (i) => {
    const p = plan[i] as (typeof plan)[number];
    byKind[p.kind] = (byKind[p.kind] ?? 0) + 1;
    await faultyClient(port, p.kind, p.delayMs, p.chunks);
  });
  for (const r of await healthy) {
    expect(r.status).toBe(200);
    expect(r.tokens).toBe(3);
  }
  const after = await streamCompletion(server.baseUrl, 'after the faults', 2);
  expect(after.status).toBe(200);
  return { faults: plan.length, byKind, blocksLeaked: await expectNoLeak(server, freeAtStart) };
}

export interface OverloadFigures {
  readonly burst: number;
  readonly accepted: number;
  readonly refused: number;
  readonly recovered: number;
}

/** A burst past the waiting-queue limit: every answer is 200 or 503 + Retry-After; afterwards a
 * burst within capacity is served in full. */
export async function overloadScenario(
  server: RealServer,
  burst: number,
  capacity: number,
): Promise<OverloadFigures> {
  const statuses = await Promise.all(
    Array.from({ length: burst }, async () => {
      const res = await fetch(`${server.baseUrl}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'burst', max_tokens: 3, ignore_eos: true }),
      });
      if (res.status === 503) {
        expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
        const body = (await res.json()) as OpenAiErrorBody;
        expect(body.error.type).toBe('service_unavailable_error');
      } else {
        await res.arrayBuffer();
      }
      return res.status;
    }),
  );
  expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
  const refused = statuses.filter((s) => s === 503).length;
  expect(refused).toBeGreaterThan(0);
  await eventually(() => server.runtime.engine.stats().numRunning === 0, 30_000);
  const again = await Promise.all(
    Array.from({ length: capacity }, () =>
      fetch(`${server.baseUrl}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'recovered', max_tokens: 2 }),
      }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      }),
    ),
  );
  expect(again).toEqual(Array.from({ length: capacity }, () => 200));
  return { burst, accepted: burst - refused, refused, recovered: again.length };
}

export interface HostileFigures {
  readonly bodies: number;
  readonly byStatus: Record<string, number>;
  readonly byKind: Record<string, number>;
  readonly blocksLeaked: number;
}

async function sendHostile(baseUrl: string, endpoint: Endpoint, h: HostileBody): Promise<number> {
  const path = endpoint === 'completions' ? '/v1/completions' : '/v1/chat/completions';
  const res = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: h.contentType === undefined ? {} : { 'content-type': h.contentType },
    body: h.body,
  });
  const text = await res.text();
  if (res.status < 400 || res.status >= 500) {
    throw new Error(
      `${h.kind}: status ${res.status} for ${Buffer.from(h.body).toString('utf8').slice(0, 300)}: ${text.slice(0, 300)}`,
    );
  }
  const body = JSON.parse(text) as OpenAiErrorBody;
  const keys = Object.keys(body.error ?? {})
    .sort()
    .join(',');
  if (keys !== 'code,message,param,type' || typeof body.error.message !== 'string') {
    throw new Error(`${h.kind}: not OpenAI's error shape: ${text.slice(0, 300)}`);
  }
  return res.status;
}

/** fast-check bodies against both POST endpoints: every one a 4xx in OpenAI's shape. */
export async function hostileScenario(
  server: RealServer,
  bodiesPerEndpoint: number,
  seed: number,
): Promise<HostileFigures> {
  const freeAtStart = server.runtime.engine.stats().numFreeBlocks;
  const limits = {
    maxN: server.config.maxNumSeqs,
    vocabSize: server.runtime.vocabSize,
    bodyLimit: server.config.maxRequestBodySize,
  };
  const byStatus: Record<string, number> = {};
  const byKind: Record<string, number> = {};
  let bodies = 0;
  for (const endpoint of ['completions', 'chat'] as const) {
    await fc.assert(
      fc.asyncProperty(hostileBodies(endpoint, limits), async (h) => {
        const status = await sendHostile(server.baseUrl, endpoint, h);
        byStatus[status] = (byStatus[status] ?? 0) + 1;
        byKind[h.kind] = (byKind[h.kind] ?? 0) + 1;
        bodies++;
      }),
      { numRuns: bodiesPerEndpoint, seed, endOnFailure: true },
    );
  }
  const ok = await streamCompletion(server.baseUrl, 'still healthy', 2);
  expect(ok.status).toBe(200);
  return { bodies, byStatus, byKind, blocksLeaked: await expectNoLeak(server, freeAtStart) };
}

/** With --api-key, every /v1 route refuses a missing or wrong key (401, OpenAI's shape). */
export async function authScenario(server: RealServer, key: string): Promise<number> {
  const routes: [string, string][] = [
    ['GET', '/v1/models'],
    ['GET', `/v1/models/${server.runtime.modelName}`],
    ['POST', '/v1/completions'],
    ['POST', '/v1/chat/completions'],
  ];
  const variants: Record<string, string>[] = [
    {},
    { authorization: 'Bearer wrong' },
    { authorization: `Bearer ${key}x` },
    { authorization: key },
    { authorization: `Basic ${key}` },
    { authorization: 'Bearer ' },
  ];
  let refused = 0;
  for (const [method, path] of routes) {
    for (const headers of variants) {
      const res = await fetch(`${server.baseUrl}${path}`, {
        method,
        headers: { 'content-type': 'application/json', ...headers },
        ...(method === 'POST'
          ? {
              body: JSON.stringify({
                prompt: 'x',
                messages: [{ role: 'user', content: 'x' }],
                max_tokens: 1,
              }),
            }
          : {}),
      });
      expect(res.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(401);
      expect(((await res.json()) as OpenAiErrorBody).error.code).toBe('FS_ERR_AUTH_INVALID_KEY');
      refused++;
    }
    const ok = await fetch(`${server.baseUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      ...(method === 'POST'
        ? {
            body: JSON.stringify(
              path.includes('chat')
                ? { messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }
                : { prompt: 'x', max_tokens: 1 },
            ),
          }
        : {}),
    });
    expect(ok.status, `${method} ${path} with the key`).toBe(200);
  }
  return refused;
}
