// Options of `flashserve bench serve`, named as `vllm bench serve` names them where one exists.

import { type OptionSpec, parseArgv, parseEnv, parseValue } from '../cli/options.js';
import { configInvalidValue } from '../errors.js';

export interface BenchConfig {
  /** Server root, e.g. http://127.0.0.1:8000 (the endpoint path is appended). */
  baseUrl: string;
  /** /v1/completions or /v1/chat/completions. */
  endpoint: string;
  /** Model name to send; undefined asks the server's /v1/models. */
  model: string | undefined;
  datasetName: 'random' | 'jsonl';
  datasetPath: string | undefined;
  randomInputLen: number;
  randomOutputLen: number;
  /** Lengths vary uniformly in [len * (1 - r), len * (1 + r)]. */
  randomRangeRatio: number;
  numPrompts: number;
  /** Most requests in flight; undefined is unbounded. */
  maxConcurrency: number | undefined;
  /** Requests per second, Poisson arrivals; Infinity sends all at once. */
  requestRate: number;
  seed: number;
  apiKey: string | undefined;
  ignoreEos: boolean;
  /** Where the JSON result goes; undefined writes none. */
  resultFile: string | undefined;
  /** Per-request timeout in seconds. */
  requestTimeout: number;
}

type Key = keyof BenchConfig;

export const BENCH_OPTIONS: readonly OptionSpec<Key>[] = [
  {
    key: 'baseUrl',
    flag: 'base-url',
    kind: { type: 'string' },
    metavar: 'url',
    default: 'http://127.0.0.1:8000',
    help: 'server to measure',
  },
  {
    key: 'endpoint',
    flag: 'endpoint',
    kind: { type: 'enum', choices: ['/v1/completions', '/v1/chat/completions'] },
    default: '/v1/completions',
    help: 'API to call',
  },
  {
    key: 'model',
    flag: 'model',
    kind: { type: 'string' },
    metavar: 'name',
    help: "model name (default: the server's first)",
  },
  {
    key: 'datasetName',
    flag: 'dataset-name',
    kind: { type: 'enum', choices: ['random', 'jsonl'] },
    default: 'random',
    help: 'where prompts come from',
  },
  {
    key: 'datasetPath',
    flag: 'dataset-path',
    kind: { type: 'string' },
    metavar: 'file.jsonl',
    help: 'JSONL of {"prompt": ..., "output_len"?: n} (with --dataset-name jsonl)',
  },
  {
    key: 'randomInputLen',
    flag: 'random-input-len',
    kind: { type: 'int', min: 1 },
    default: 128,
    help: 'prompt tokens (random)',
  },
  {
    key: 'randomOutputLen',
    flag: 'random-output-len',
    kind: { type: 'int', min: 1 },
    default: 64,
    help: 'tokens to generate (random)',
  },
  {
    key: 'randomRangeRatio',
    flag: 'random-range-ratio',
    kind: { type: 'number', min: 0, max: 1 },
    default: 0,
    help: 'spread of random lengths',
  },
  {
    key: 'numPrompts',
    flag: 'num-prompts',
    kind: { type: 'int', min: 1, max: 1_000_000 },
    default: 100,
    help: 'requests to send',
  },
  {
    key: 'maxConcurrency',
    flag: 'max-concurrency',
    kind: { type: 'int', min: 1 },
    help: 'most requests in flight (default: unbounded)',
  },
  {
    key: 'requestRate',
    flag: 'request-rate',
    kind: { type: 'string' },
    metavar: 'req/s|inf',
    default: 'inf',
    help: 'Poisson arrival rate',
  },
  {
    key: 'seed',
    flag: 'seed',
    kind: { type: 'int', min: 0 },
    default: 0,
    help: 'seed of prompts and arrivals',
  },
  {
    key: 'apiKey',
    flag: 'api-key',
    kind: { type: 'string' },
    metavar: 'key',
    help: 'sent as Authorization: Bearer',
  },
  {
    key: 'ignoreEos',
    flag: 'ignore-eos',
    kind: { type: 'bool' },
    default: true,
    help: 'generate the full output length',
  },
  {
    key: 'resultFile',
    flag: 'result-file',
    kind: { type: 'string' },
    metavar: 'path',
    help: 'write the result as JSON',
  },
  {
    key: 'requestTimeout',
    flag: 'request-timeout',
    kind: { type: 'number', min: 0, exclusiveMin: true },
    default: 600,
    help: 'seconds per request',
  },
];

export function resolveBenchConfig(argv: readonly string[], env: NodeJS.ProcessEnv = {}): BenchConfig {
  const defaults: Record<string, unknown> = {};
  for (const s of BENCH_OPTIONS) if (s.default !== undefined) defaults[s.key] = s.default;
  // Bench reads FLASHSERVE_BENCH_<NAME> so it never picks up a server's FLASHSERVE_PORT and the like.
  const envOpts = parseEnv(
    BENCH_OPTIONS.map((s) => ({ ...s, flag: `bench-${s.flag}` })),
    env,
  );
  const v = { ...defaults, ...envOpts, ...parseArgv(BENCH_OPTIONS, argv) } as Record<string, unknown>;
  const rateRaw = String(v['requestRate']);
  const requestRate =
    rateRaw === 'inf'
      ? Number.POSITIVE_INFINITY
      : Number(parseValue({ ...rateSpec }, rateRaw, '--request-rate'));
  const config = { ...v, requestRate } as unknown as BenchConfig;
  if (config.datasetName === 'jsonl' && config.datasetPath === undefined) {
    throw configInvalidValue('--dataset-path', 'a file (--dataset-name jsonl needs one)', '');
  }
  try {
    new URL(config.baseUrl);
  } catch {
    throw configInvalidValue('--base-url', 'a URL such as http://127.0.0.1:8000', config.baseUrl);
  }
  return config;
}

const rateSpec: OptionSpec = {
  key: 'requestRate',
  flag: 'request-rate',
  kind: { type: 'number', min: 0, exclusiveMin: true },
  help: '',
};
