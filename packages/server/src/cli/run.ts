// The `flashserve` command line, as a function of argv and the environment so tests can drive it
// in-process. `serve` runs the OpenAI-compatible server, `bench serve` measures one. A configuration
// error prints one line and the usage and exits 2 before anything starts; a startup failure the user
// can fix (unavailable device, unknown backend, bad model directory) prints one line and exits 1.

import { FlashserveError } from '@flashserve/core';
import { SERVER_VERSION } from '../app.js';
import { BENCH_OPTIONS, type BenchConfig, resolveBenchConfig } from '../bench/config.js';
import { runBenchServe } from '../bench/run.js';
import { resolveServeConfig, SERVE_USAGE_OPTIONS, type ServeConfig } from '../config.js';
import { formatUsage } from './options.js';
import { type ServeHandle, serve } from './serve.js';

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Either the process should exit with a code, or a server is now running. */
export type CliResult = { readonly exitCode: number } | { readonly server: ServeHandle };

const TOP_USAGE = `usage: flashserve <command> [options]

commands:
  serve         run the OpenAI-compatible server (default model: the embedded one)
  bench serve   benchmark an OpenAI-compatible server
  --version     print the version
  --help        this text; \`flashserve <command> --help\` lists a command's options`;

const SERVE_USAGE = formatUsage('flashserve serve', SERVE_USAGE_OPTIONS);
const BENCH_USAGE = formatUsage('flashserve bench serve', BENCH_OPTIONS);

function usageError(io: CliIo, message: string, usage: string): CliResult {
  io.stderr(`flashserve: error: ${message.split('\n')[0]}\n\n${usage}\n`);
  return { exitCode: 2 };
}

function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

/** Runs `fn`, turning a FlashserveError into one line on stderr and exit code 1. */
async function userErrors(io: CliIo, fn: () => Promise<CliResult>): Promise<CliResult> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof FlashserveError)) throw err;
    io.stderr(`flashserve: error: ${err.message}\n`);
    return { exitCode: 1 };
  }
}

export async function runCli(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<CliResult> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    io.stdout(`${TOP_USAGE}\n`);
    return { exitCode: 0 };
  }
  if (command === '--version' || command === '-v') {
    io.stdout(`flashserve ${SERVER_VERSION}\n`);
    return { exitCode: 0 };
  }
  if (command === 'serve') {
    if (wantsHelp(rest)) {
      io.stdout(`${SERVE_USAGE}\n`);
      return { exitCode: 0 };
    }
    let config: ServeConfig;
    try {
      config = resolveServeConfig(rest, env);
    } catch (err) {
      if (err instanceof FlashserveError) return usageError(io, err.message, SERVE_USAGE);
      throw err;
    }
    return userErrors(io, async () => ({ server: await serve(config, env) }));
  }
  if (command === 'bench') {
    const [sub, ...args] = rest;
    if (sub !== 'serve')
      return usageError(io, `unknown bench command "${sub ?? ''}" (expected "serve")`, BENCH_USAGE);
    if (wantsHelp(args)) {
      io.stdout(`${BENCH_USAGE}\n`);
      return { exitCode: 0 };
    }
    let config: BenchConfig;
    try {
      config = resolveBenchConfig(args, env);
    } catch (err) {
      if (err instanceof FlashserveError) return usageError(io, err.message, BENCH_USAGE);
      throw err;
    }
    return userErrors(io, async () => {
      await runBenchServe(config, (line) => io.stdout(`${line}\n`));
      return { exitCode: 0 };
    });
  }
  return usageError(io, `unknown command "${command}"`, TOP_USAGE);
}
