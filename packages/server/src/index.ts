// Public surface of @flashserve/server: build the app around an engine, resolve the serve
// configuration, start the server as the CLI does, and the serving benchmark.

export { type AppOptions, buildApp, type FlashserveApp, SERVER_VERSION } from './app.js';
export { type BenchConfig, resolveBenchConfig } from './bench/config.js';
export type { BenchResult } from './bench/report.js';
export { runBenchServe } from './bench/run.js';
export { type CliIo, type CliResult, runCli } from './cli/run.js';
export { type ServeHandle, serve } from './cli/serve.js';
export { resolveServeConfig, type ServeConfig } from './config.js';
export { EMBEDDED_MODEL_NAME } from './embedded-model/config.js';
export { ensureEmbeddedModel } from './embedded-model/materialize.js';
export type { ServingEngine } from './engine-port.js';
export { SERVER_ERROR_CODES } from './errors.js';
export { loadRuntime, type Runtime } from './runtime/load-runtime.js';
