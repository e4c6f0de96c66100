// Builds the fastify app around an engine: validation settings, the error handler, auth, metrics and
// every route. The app does not listen; the CLI (or a test) does. Everything the app needs comes in
// through AppOptions, already validated.

import { createRequire } from 'node:module';
import type { Tokenizer } from '@flashserve/core';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { ServeConfig } from './config.js';
import { nowSeconds, type ServerContext } from './context.js';
import type { ServingEngine } from './engine-port.js';
import { serverDraining } from './errors.js';
import type { SamplingDefaults } from './openai/sampling.js';
import { registerAuth } from './plugins/auth.js';
import { clientErrorHandler, frameworkErrors } from './plugins/client-errors.js';
import { registerErrorHandler } from './plugins/error-handler.js';
import { ServerMetrics } from './plugins/metrics.js';
import { registerChatCompletions } from './routes/chat-completions.js';
import { registerCompletions } from './routes/completions.js';
import { registerHealth } from './routes/health.js';
import { registerMetrics } from './routes/metrics.js';
import { registerModels } from './routes/models.js';
import { registerTokenize } from './routes/tokenize.js';
import type { Runtime } from './runtime/load-runtime.js';

export interface AppOptions {
  readonly engine: ServingEngine;
  /** Absent under --skip-tokenizer-init: token ids only. */
  readonly tokenizer: Tokenizer | undefined;
  readonly modelName: string;
  readonly maxModelLen: number;
  readonly vocabSize: number;
  /** Largest `n` a request may ask for. */
  readonly maxN: number;
  readonly maxLogprobs: number;
  /** Sampling defaults from the model's generation config; absent: OpenAI's. */
  readonly samplingDefaults?: SamplingDefaults;
  readonly apiKey?: string | undefined;
  /** Largest request body in bytes (413 beyond). */
  readonly bodyLimit: number;
  /** A pino logger; absent: no logging. */
  readonly logger?: FastifyBaseLogger;
}

export interface FlashserveApp {
  readonly app: FastifyInstance;
  readonly context: ServerContext;
  readonly metrics: ServerMetrics;
}

export const SERVER_VERSION: string = (
  createRequire(import.meta.url)('../package.json') as { version: string }
).version;

/** The app options that a loaded runtime and its serve configuration imply (the logger aside). */
export function appOptionsFor(runtime: Runtime, config: ServeConfig): AppOptions {
  return {
    engine: runtime.engine,
    tokenizer: runtime.tokenizer,
    modelName: runtime.modelName,
    maxModelLen: runtime.maxModelLen,
    vocabSize: runtime.vocabSize,
    maxN: config.maxNumSeqs,
    maxLogprobs: config.maxLogprobs,
    samplingDefaults: runtime.samplingDefaults,
    apiKey: config.apiKey,
    bodyLimit: config.maxRequestBodySize,
  };
}

export function buildApp(opts: AppOptions): FlashserveApp {
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    bodyLimit: opts.bodyLimit,
    // Answer 503 to requests that arrive on kept-alive connections while closing.
    return503OnClosing: true,
    frameworkErrors,
    clientErrorHandler,
    ajv: {
      customOptions: {
        // Wrong types are errors, never silently converted; bodies are never rewritten.
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: false,
        allErrors: false,
        allowUnionTypes: true,
      },
    },
  }) as unknown as FastifyInstance;

  const context: ServerContext = {
    engine: opts.engine,
    tokenizer: opts.tokenizer,
    modelName: opts.modelName,
    maxModelLen: opts.maxModelLen,
    limits: { vocabSize: opts.vocabSize, maxN: opts.maxN, maxLogprobs: opts.maxLogprobs },
    samplingDefaults: opts.samplingDefaults ?? {},
    startedAt: nowSeconds(),
    version: SERVER_VERSION,
    draining: false,
  };
  const metrics = new ServerMetrics(opts.engine, opts.modelName);

  registerErrorHandler(app, opts.bodyLimit);
  registerAuth(app, opts.apiKey);
  app.addHook('onRequest', async (request) => {
    if (context.draining && request.method === 'POST' && request.url.startsWith('/v1/'))
      throw serverDraining();
  });
  app.addHook('onClose', async () => metrics.close());

  registerModels(app, context);
  registerCompletions(app, context);
  registerChatCompletions(app, context);
  registerTokenize(app, context);
  registerHealth(app, context);
  registerMetrics(app, metrics);
  return { app, context, metrics };
}
