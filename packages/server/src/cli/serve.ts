// `flashserve serve`: load the model, build the engine and the app, listen, and shut down cleanly.
//
// Shutdown on SIGTERM/SIGINT: /health turns 503 and new generation requests are refused; fastify
// stops accepting connections; running requests get up to --shutdown-timeout seconds to finish, then
// the engine aborts the rest (their streams end with finish_reason "abort"); the process exits 0.
// A second signal exits at once.
//
// A model that can no longer run steps (a tensor-parallel rank died: its GPU's share of the weights
// and KV cache is gone) makes the server shut down the same way, then `failed` resolves with the
// reason and the CLI exits 1, so a supervisor (systemd, Kubernetes) restarts it. vLLM's API server
// does the same when its engine dies.

import pino from 'pino';
import { appOptionsFor, buildApp } from '../app.js';
import type { ServeConfig } from '../config.js';
import { configListen } from '../errors.js';
import { loadRuntime } from '../runtime/load-runtime.js';
import { progressBar } from './progress.js';

export interface ServeHandle {
  /** The address the server listens on, e.g. http://127.0.0.1:8000. */
  readonly url: string;
  /** Drains and closes; resolves when everything is down. */
  shutdown(reason: string): Promise<void>;
  /** Resolves, with the reason, once the server has shut itself down because the model broke. */
  readonly failed: Promise<string>;
}

/** How often the server checks whether its model can still run steps. */
const BROKEN_CHECK_MS = 200;

export async function serve(config: ServeConfig, env: NodeJS.ProcessEnv): Promise<ServeHandle> {
  const logger = pino({ level: config.logLevel, base: { service: 'flashserve' } });
  logger.info(
    { config: { ...config, apiKey: config.apiKey === undefined ? undefined : '<set>' } },
    'starting',
  );

  let bar: ReturnType<typeof progressBar> | undefined;
  const runtime = await loadRuntime(config, env, {
    log: logger,
    onProgress(stage, fraction) {
      bar ??= progressBar(stage);
      bar.update(fraction);
      if (fraction >= 1) {
        bar.done();
        bar = undefined;
      }
    },
  });
  logger.info(runtime.summary, 'model loaded');

  const { app, context } = buildApp({ ...appOptionsFor(runtime, config), logger });
  let url: string;
  try {
    url = await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await runtime.engine.shutdown({ drainMs: 0 });
    await runtime.close();
    throw configListen(`${config.host}:${config.port}`, (err as Error).message);
  }
  logger.info({ url, model: runtime.modelName }, 'listening');

  let closing: Promise<void> | undefined;
  let reportFailed: (reason: string) => void = () => {};
  const failed = new Promise<string>((resolve) => {
    reportFailed = resolve;
  });
  const watch = setInterval(() => {
    const broken = runtime.brokenReason();
    if (broken === undefined) return;
    clearInterval(watch);
    logger.error({ reason: broken }, 'the model can no longer run steps; shutting down');
    void shutdown(`model broken: ${broken}`).then(() => reportFailed(broken));
  }, BROKEN_CHECK_MS);
  watch.unref();
  const shutdown = (reason: string): Promise<void> => {
    clearInterval(watch);
    closing ??= (async () => {
      logger.info({ reason, drainSeconds: config.shutdownTimeout }, 'shutting down');
      context.draining = true;
      const closed = app.close();
      // The engine lets running requests finish within the bound, then aborts them; that ends their
      // streams, which lets app.close() resolve.
      await runtime.engine.shutdown({ drainMs: config.shutdownTimeout * 1000 });
      await Promise.race([closed, sleep(5000)]);
      app.server.closeAllConnections();
      await runtime.close();
      logger.info('stopped');
    })();
    return closing;
  };
  return { url, shutdown, failed };
}

/** Installs the signal handlers of a foreground server process. */
export function exitOnSignals(handle: ServeHandle): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) process.exit(130);
    signalled = true;
    handle.shutdown(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`flashserve: shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  void handle.failed.then((reason) => {
    process.stderr.write(`flashserve: exiting: the model can no longer run steps: ${reason}\n`);
    process.exit(1);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
