// The `flashserve` command line, driven in-process: flag errors exit 2 with one line and the usage;
// startup errors the user can fix exit 1 with one line; `serve` with no model serves the embedded
// one; a signal-style shutdown drains running requests within its bound.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, test } from 'vitest';
import { type CliResult, runCli } from '../src/cli/run.js';
import { testEnv } from './helpers/real-server.js';

async function run(argv: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = '';
  let stderr = '';
  const result: CliResult = await runCli(argv, env, {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
  });
  return { result, stdout, stderr, firstLine: stderr.split('\n')[0] };
}

describe('flag errors: one line, then the usage, exit 2', () => {
  const cases: [string[], NodeJS.ProcessEnv, string][] = [
    [['serve', '--bogus'], {}, 'flashserve: error: unknown option --bogus'],
    [
      ['serve', '--port', 'eighty'],
      {},
      'flashserve: error: --port: expected an integer >= 0 and <= 65535, got "eighty"',
    ],
    [['serve', '--device', 'tpu'], {}, 'flashserve: error: --device: expected one of cpu, cuda, got "tpu"'],
    [
      ['serve', '--kv-cache-memory', 'lots'],
      {},
      'flashserve: error: --kv-cache-memory: expected a size such as 512MiB or 2GiB, got "lots"',
    ],
    [
      ['serve'],
      { FLASHSERVE_MAX_NUM_SEQS: '0' },
      'flashserve: error: FLASHSERVE_MAX_NUM_SEQS: expected an integer >= 1 and <= 65536, got "0"',
    ],
    [
      ['serve', '--gpu-memory-utilization', '1.5'],
      {},
      'flashserve: error: --gpu-memory-utilization: expected a number > 0 and <= 1, got "1.5"',
    ],
    [
      ['bench', 'serve', '--num-prompts', '-3'],
      {},
      'flashserve: error: --num-prompts: expected an integer >= 1 and <= 1000000, got "-3"',
    ],
    [
      ['bench', 'serve', '--request-rate', 'fast'],
      {},
      'flashserve: error: --request-rate: expected a number > 0, got "fast"',
    ],
    [
      ['bench', 'serve', '--dataset-name', 'jsonl'],
      {},
      'flashserve: error: --dataset-path: expected a file (--dataset-name jsonl needs one), got ""',
    ],
    [['launch'], {}, 'flashserve: error: unknown command "launch"'],
  ];
  for (const [argv, env, line] of cases) {
    test(argv.join(' ') + (Object.keys(env).length ? ` ${JSON.stringify(env)}` : ''), async () => {
      const out = await run(argv, env);
      expect(out.result).toEqual({ exitCode: 2 });
      expect(out.firstLine).toBe(line);
      expect(out.stderr).toContain('usage: flashserve');
    });
  }

  test('a --config file: values apply, unknown keys and bad YAML are errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flashserve-cli-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'max-num-seqs: 4\nwarp_speed: 9\n');
    expect((await run(['serve', '--config', bad])).firstLine).toBe(
      `flashserve: error: unknown option "warp_speed" in ${bad}`,
    );
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'port: [1, 2\n');
    expect((await run(['serve', '--config', broken])).firstLine).toMatch(
      /^flashserve: error: --config .*broken.yaml: not valid YAML/,
    );
    const wrong = join(dir, 'wrong.yaml');
    writeFileSync(wrong, 'port: { a: 1 }\n');
    expect((await run(['serve', '--config', wrong])).firstLine).toContain(
      `${wrong}: port: expected an integer`,
    );
  });

  test('--help prints the usage with every flag and exits 0', async () => {
    const out = await run(['serve', '--help']);
    expect(out.result).toEqual({ exitCode: 0 });
    for (const flag of [
      '--model',
      '--served-model-name',
      '--device',
      '--attention-backend',
      '--block-size',
      '--max-model-len',
      '--max-num-seqs',
      '--max-num-batched-tokens',
      '--kv-cache-memory',
      '--gpu-memory-utilization',
      '--load-format',
      '--skip-tokenizer-init',
      '--host',
      '--port',
      '--api-key',
      '--seed',
      '--config',
    ]) {
      expect(out.stdout).toContain(flag);
    }
  });
});

describe('startup errors: one line, exit 1', () => {
  test('--device cuda on a machine without a usable GPU says why', async () => {
    const out = await run(['serve', '--device', 'cuda', '--log-level', 'silent'], testEnv());
    expect(out.result).toEqual({ exitCode: 1 });
    expect(out.firstLine).toMatch(/^flashserve: error: --device cuda is unavailable: .+/);
  });
  test('an unknown attention backend lists the available ones', async () => {
    const out = await run(['serve', '--attention-backend', 'warp', '--log-level', 'silent'], testEnv());
    expect(out.result).toEqual({ exitCode: 1 });
    expect(out.firstLine).toMatch(/unknown attention backend "warp"; available: .*reference-mla/);
  });
  test('a backend that cannot run here says why, without falling back', async () => {
    const out = await run(['serve', '--attention-backend', 'flashmla', '--log-level', 'silent'], testEnv());
    expect(out.result).toEqual({ exitCode: 1 });
    expect(out.stderr).toMatch(/no attention backend can run this configuration:\n\s+flashmla: .+/);
  });
  test('--model that is not a directory', async () => {
    const out = await run(['serve', '--model', '/nonexistent/model', '--log-level', 'silent'], testEnv());
    expect(out.result).toEqual({ exitCode: 1 });
    expect(out.firstLine).toContain('--model /nonexistent/model: not a directory');
  });
});

describe('serve', () => {
  test('with no model flag it serves the embedded model; shutdown lets a running request finish', async () => {
    const out = await run(
      ['serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'silent', '--served-model-name', 'tiny'],
      testEnv(),
    );
    if (!('server' in out.result)) throw new Error(out.stderr);
    const { server } = out.result;
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
    expect((await client.models.list()).data[0]?.id).toBe('tiny');
    const stream = await client.completions.create({
      model: 'tiny',
      prompt: 'drain me',
      max_tokens: 12,
      stream: true,
    });
    const finishes: (string | null)[] = [];
    let tokens = 0;
    let shuttingDown: Promise<void> | undefined;
    for await (const chunk of stream) {
      tokens++;
      // Shut down mid-stream: this request must still complete.
      shuttingDown ??= server.shutdown('test');
      finishes.push(chunk.choices[0]?.finish_reason ?? null);
    }
    await shuttingDown;
    expect(finishes.at(-1)).toBe('length');
    expect(tokens).toBeGreaterThan(1);
    await expect(fetch(`${server.url}/health`)).rejects.toThrow();
  });

  test('the drain is bounded: past --shutdown-timeout, running requests end with finish_reason abort', async () => {
    const out = await run(
      ['serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'silent', '--shutdown-timeout', '0.3'],
      testEnv(),
    );
    if (!('server' in out.result)) throw new Error(out.stderr);
    const { server } = out.result;
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.completions.create({
      model: (await client.models.list()).data[0]?.id ?? '',
      prompt: 'long',
      max_tokens: 3000,
      stream: true,
    });
    const started = Date.now();
    let shuttingDown: Promise<void> | undefined;
    let last: string | null | undefined;
    for await (const chunk of stream) {
      shuttingDown ??= server.shutdown('test');
      last = chunk.choices[0]?.finish_reason ?? last;
    }
    await shuttingDown;
    expect(last).toBe('abort');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
