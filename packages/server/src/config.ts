// The one typed configuration of `flashserve serve`, parsed and validated once at the edge (argv,
// FLASHSERVE_* environment, --config YAML). Lower layers receive the slices they need; nothing below
// reads the environment.

import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import {
  type OptionSpec,
  type ParsedOptions,
  parseArgv,
  parseEnv,
  parseMapping,
  parseValue,
} from './cli/options.js';
import { configFile } from './errors.js';

export interface ServeConfig {
  /** Model directory in the Hugging Face layout; undefined serves the embedded default model. */
  model: string | undefined;
  /** Name clients pass as `model`; defaults to the model directory's name. */
  servedModelName: string | undefined;
  device: 'cpu' | 'cuda';
  /** "auto" or a registered backend name. */
  attentionBackend: string;
  /** Tokens per KV block; undefined lets the backend choose. */
  blockSize: number | undefined;
  /** Longest prompt + output; undefined means the model's own limit. */
  maxModelLen: number | undefined;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  /** Ranks one model is split over (a thread each; on CUDA, rank r drives GPU r). */
  tensorParallelSize: number;
  /** KV cache budget in bytes; undefined derives it (CPU: a fixed default; CUDA: from utilization). */
  kvCacheMemory: number | undefined;
  /** Fraction of GPU memory the process may use (weights + KV cache). */
  gpuMemoryUtilization: number;
  loadFormat: 'auto' | 'dummy';
  /** auto: sampling defaults from the model's generation_config.json; vllm: OpenAI's defaults. */
  generationConfig: 'auto' | 'vllm';
  skipTokenizerInit: boolean;
  host: string;
  port: number;
  apiKey: string | undefined;
  /** Seed of the dummy/embedded weights and the default of requests that set none. */
  seed: number;
  /** Waiting-queue limit: beyond it requests get 503 + Retry-After. */
  maxWaitingRequests: number;
  enablePrefixCaching: boolean;
  /** Every step eager: no CUDA graphs for decode steps (vLLM's --enforce-eager). Only --device cuda
   * has graphs; see runtime/load-runtime.ts. */
  enforceEager: boolean;
  /** vLLM's --async-scheduling: a decode step is launched before the previous step's tokens are back
   * on the host, so the host's work per step overlaps the device's (EngineOptions.asyncScheduling).
   * Unset: on with --device cuda, off on the CPU, whose forward computes before it returns (nothing
   * to overlap, and each token would go out one step later). In effect where the model, device and
   * sampler support it. */
  asyncScheduling: boolean | undefined;
  /** Most alternatives `logprobs`/`top_logprobs` may ask for. */
  maxLogprobs: number;
  /** Largest request body accepted, in bytes (413 beyond). */
  maxRequestBodySize: number;
  /** How long SIGTERM waits for running requests before aborting them, in seconds. */
  shutdownTimeout: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** The --config file the values came from, if any (for the startup log). */
  configFile: string | undefined;
}

type Key = Exclude<keyof ServeConfig, 'configFile'>;

/** --enforce-eager's default: false, so decode steps on --device cuda replay CUDA graphs (padded to
 * a ladder of batch sizes), as gpu-e2e.sh's graphs mode checked against eager on an H100. */
export const ENFORCE_EAGER_DEFAULT = false;

export const SERVE_OPTIONS: readonly OptionSpec<Key>[] = [
  {
    key: 'model',
    flag: 'model',
    kind: { type: 'string' },
    metavar: 'dir',
    help: 'model directory (Hugging Face layout); unset: the embedded model',
  },
  {
    key: 'servedModelName',
    flag: 'served-model-name',
    kind: { type: 'string' },
    metavar: 'name',
    help: 'model name in the API',
  },
  {
    key: 'device',
    flag: 'device',
    kind: { type: 'enum', choices: ['cpu', 'cuda'] },
    default: 'cpu',
    help: 'where the model runs',
  },
  {
    key: 'attentionBackend',
    flag: 'attention-backend',
    kind: { type: 'string' },
    metavar: 'auto|name',
    default: 'auto',
    help: 'attention backend',
  },
  {
    key: 'blockSize',
    flag: 'block-size',
    kind: { type: 'int', min: 1, max: 4096 },
    help: "tokens per KV block (default: the backend's choice)",
  },
  {
    key: 'maxModelLen',
    flag: 'max-model-len',
    kind: { type: 'int', min: 1 },
    help: "longest prompt + output (default: the model's)",
  },
  {
    key: 'maxNumSeqs',
    flag: 'max-num-seqs',
    kind: { type: 'int', min: 1, max: 65536 },
    default: 64,
    help: 'most sequences per step',
  },
  {
    key: 'tensorParallelSize',
    flag: 'tensor-parallel-size',
    kind: { type: 'int', min: 1, max: 64 },
    default: 1,
    help: 'ranks one model is split over (a thread each; with --device cuda rank r drives GPU r, over NCCL)',
  },
  {
    key: 'maxNumBatchedTokens',
    flag: 'max-num-batched-tokens',
    kind: { type: 'int', min: 1 },
    default: 2048,
    help: 'token budget per step',
  },
  {
    key: 'kvCacheMemory',
    flag: 'kv-cache-memory',
    kind: { type: 'bytes' },
    help: 'KV cache size, e.g. 256MiB (default: 128MiB on cpu)',
  },
  {
    key: 'gpuMemoryUtilization',
    flag: 'gpu-memory-utilization',
    kind: { type: 'number', min: 0, max: 1, exclusiveMin: true },
    default: 0.9,
    help: 'fraction of GPU memory to use (cuda)',
  },
  {
    key: 'loadFormat',
    flag: 'load-format',
    kind: { type: 'enum', choices: ['auto', 'dummy'] },
    default: 'auto',
    help: "dummy: random weights of the config's shapes",
  },
  {
    key: 'generationConfig',
    flag: 'generation-config',
    kind: { type: 'enum', choices: ['auto', 'vllm'] },
    default: 'auto',
    help: "auto: the model's generation_config.json sets sampling defaults; vllm: OpenAI's",
  },
  {
    key: 'skipTokenizerInit',
    flag: 'skip-tokenizer-init',
    kind: { type: 'bool' },
    default: false,
    help: 'no tokenizer: token ids in, token ids out',
  },
  { key: 'host', flag: 'host', kind: { type: 'string' }, default: '0.0.0.0', help: 'address to listen on' },
  {
    key: 'port',
    flag: 'port',
    kind: { type: 'int', min: 0, max: 65535 },
    default: 8000,
    help: 'port to listen on (0: any free port)',
  },
  {
    key: 'apiKey',
    flag: 'api-key',
    kind: { type: 'string' },
    metavar: 'key',
    help: 'require "Authorization: Bearer <key>" on /v1 routes',
  },
  {
    key: 'seed',
    flag: 'seed',
    kind: { type: 'int', min: 0, max: 2 ** 32 - 1 },
    default: 0,
    help: 'seed of generated weights',
  },
  {
    key: 'maxWaitingRequests',
    flag: 'max-waiting-requests',
    kind: { type: 'int', min: 1 },
    default: 1024,
    help: 'waiting-queue limit (503 beyond)',
  },
  {
    key: 'enablePrefixCaching',
    flag: 'enable-prefix-caching',
    kind: { type: 'bool' },
    default: true,
    help: 'reuse KV blocks of shared prefixes (--no-enable-prefix-caching: off)',
  },
  {
    key: 'enforceEager',
    flag: 'enforce-eager',
    kind: { type: 'bool' },
    default: ENFORCE_EAGER_DEFAULT,
    help: 'run every step eagerly: no CUDA graphs for decode steps (--device cuda)',
  },
  {
    key: 'asyncScheduling',
    flag: 'async-scheduling',
    kind: { type: 'bool' },
    help: "launch each decode step before the previous step's tokens are read back (default: on with --device cuda)",
  },
  {
    key: 'maxLogprobs',
    flag: 'max-logprobs',
    kind: { type: 'int', min: 0, max: 1000 },
    default: 20,
    help: 'most alternatives logprobs may ask for',
  },
  {
    key: 'maxRequestBodySize',
    flag: 'max-request-body-size',
    kind: { type: 'bytes' },
    default: '8MiB',
    help: 'largest request body (413 beyond)',
  },
  {
    key: 'shutdownTimeout',
    flag: 'shutdown-timeout',
    kind: { type: 'number', min: 0, max: 3600 },
    default: 30,
    help: 'seconds SIGTERM lets running requests finish',
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    kind: { type: 'enum', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    default: 'info',
    help: 'log level',
  },
];

const CONFIG_OPTION: OptionSpec = {
  key: 'config',
  flag: 'config',
  kind: { type: 'string' },
  metavar: 'file.yaml',
  help: 'read options from a YAML file (keys are option names)',
};

/** Every option `flashserve serve` accepts, --config included (for the usage). */
export const SERVE_USAGE_OPTIONS: readonly OptionSpec[] = [...SERVE_OPTIONS, CONFIG_OPTION];

function readConfigFile(path: string): ParsedOptions {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw configFile(path, (err as Error).message);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw configFile(path, `not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw configFile(path, 'expected a mapping of option names to values');
  return parseMapping(SERVE_OPTIONS, doc as Record<string, unknown>, path);
}

function defaults(): ParsedOptions {
  const out: ParsedOptions = {};
  for (const spec of SERVE_OPTIONS) {
    if (spec.default === undefined) continue;
    // Defaults are written as a user would type them, so they go through the same parser.
    out[spec.key] =
      typeof spec.default === 'string' ? parseValue(spec, spec.default, 'default') : spec.default;
  }
  return out;
}

/** Builds the serve configuration from argv (after `serve`) and the environment. Throws a
 * FlashserveError naming the flag, variable or file key on any bad value. */
export function resolveServeConfig(argv: readonly string[], env: NodeJS.ProcessEnv = {}): ServeConfig {
  const cli = parseArgv([...SERVE_OPTIONS, CONFIG_OPTION], argv);
  const fromEnv = parseEnv([...SERVE_OPTIONS, CONFIG_OPTION], env);
  const file = (cli['config'] ?? fromEnv['config']) as string | undefined;
  const merged: ParsedOptions = {
    ...defaults(),
    ...(file === undefined ? {} : readConfigFile(file)),
    ...fromEnv,
    ...cli,
  };
  const get = <T>(key: Key) => merged[key] as T;
  return {
    model: get<string | undefined>('model'),
    servedModelName: get<string | undefined>('servedModelName'),
    device: get<'cpu' | 'cuda'>('device'),
    attentionBackend: get<string>('attentionBackend'),
    blockSize: get<number | undefined>('blockSize'),
    maxModelLen: get<number | undefined>('maxModelLen'),
    maxNumSeqs: get<number>('maxNumSeqs'),
    tensorParallelSize: get<number>('tensorParallelSize'),
    maxNumBatchedTokens: get<number>('maxNumBatchedTokens'),
    kvCacheMemory: get<number | undefined>('kvCacheMemory'),
    gpuMemoryUtilization: get<number>('gpuMemoryUtilization'),
    loadFormat: get<'auto' | 'dummy'>('loadFormat'),
    generationConfig: get<'auto' | 'vllm'>('generationConfig'),
    skipTokenizerInit: get<boolean>('skipTokenizerInit'),
    host: get<string>('host'),
    port: get<number>('port'),
    apiKey: get<string | undefined>('apiKey'),
    seed: get<number>('seed'),
    maxWaitingRequests: get<number>('maxWaitingRequests'),
    enablePrefixCaching: get<boolean>('enablePrefixCaching'),
    enforceEager: get<boolean>('enforceEager'),
    asyncScheduling: get<boolean | undefined>('asyncScheduling'),
    maxLogprobs: get<number>('maxLogprobs'),
    maxRequestBodySize: get<number>('maxRequestBodySize'),
    shutdownTimeout: get<number>('shutdownTimeout'),
    logLevel: get<ServeConfig['logLevel']>('logLevel'),
    configFile: file,
  };
}
