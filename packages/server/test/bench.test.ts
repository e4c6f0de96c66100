// `flashserve bench serve` against a real server: random token-id prompts on /v1/completions, text
// prompts on the chat endpoint, a JSONL dataset, a finite Poisson rate, and the JSON result file.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { resolveBenchConfig } from '../src/bench/config.js';
import { runBenchServe } from '../src/bench/run.js';
import { type RealServer, startRealServer } from './helpers/real-server.js';

let server: RealServer;
const dir = mkdtempSync(join(tmpdir(), 'flashserve-bench-'));
beforeAll(async () => {
  server = await startRealServer();
});
afterAll(() => server.close());

test('random prompts, completions endpoint, table and JSON result', async () => {
  const resultFile = join(dir, 'result.json');
  const lines: string[] = [];
  const config = resolveBenchConfig([
    '--base-url',
    server.baseUrl,
    '--num-prompts',
    '6',
    '--max-concurrency',
    '3',
    '--random-input-len',
    '16',
    '--random-output-len',
    '3',
    '--result-file',
    resultFile,
  ]);
  const result = await runBenchServe(config, (l) => lines.push(l));
  expect(result.completed).toBe(6);
  expect(result.failed).toBe(0);
  expect(result.totalInputTokens).toBe(6 * 16);
  expect(result.totalOutputTokens).toBe(6 * 3);
  expect(result.ttftMs.mean).toBeGreaterThan(0);
  expect(result.tpotMs.p50).toBeGreaterThan(0);
  const table = lines.join('\n');
  for (const row of [
    'Request throughput (req/s)',
    'Input token throughput (tok/s)',
    'Output token throughput (tok/s)',
    '| TTFT |',
    '| TPOT |',
    '| ITL |',
  ]) {
    expect(table).toContain(row);
  }
  const json = JSON.parse(readFileSync(resultFile, 'utf8')) as { completed: number; itlMs: { p99: number } };
  expect(json.completed).toBe(6);
  expect(json.itlMs.p99).toBeGreaterThan(0);
});

test('chat endpoint with a Poisson request rate, and a JSONL dataset', async () => {
  const chat = await runBenchServe(
    resolveBenchConfig([
      '--base-url',
      server.baseUrl,
      '--endpoint',
      '/v1/chat/completions',
      '--num-prompts',
      '4',
      '--request-rate',
      '20',
      '--random-input-len',
      '8',
      '--random-output-len',
      '2',
    ]),
    () => {},
  );
  expect(chat.completed).toBe(4);
  expect(chat.requestRate).toBe(20);
  const dataset = join(dir, 'prompts.jsonl');
  writeFileSync(
    dataset,
    `${JSON.stringify({ prompt: 'Hello there', output_len: 2 })}\n${JSON.stringify({ prompt: [1000, 2000, 3000] })}\n`,
  );
  const jsonl = await runBenchServe(
    resolveBenchConfig([
      '--base-url',
      server.baseUrl,
      '--dataset-name',
      'jsonl',
      '--dataset-path',
      dataset,
      '--num-prompts',
      '4',
      '--random-output-len',
      '3',
    ]),
    () => {},
  );
  expect(jsonl.completed).toBe(4);
  expect(jsonl.totalOutputTokens).toBe(2 + 3 + 2 + 3);
});

test('an unreachable server is a clear error', async () => {
  await expect(
    runBenchServe(resolveBenchConfig(['--base-url', 'http://127.0.0.1:1', '--num-prompts', '1']), () => {}),
  ).rejects.toThrow(/cannot reach http:\/\/127.0.0.1:1\/v1\/models/);
});
