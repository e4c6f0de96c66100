// Starts the real thing for integration tests: the serve configuration parsed from flags, the real
// engine with the embedded model (from the run's shared cache directory), the app on a loopback port.

import type { AddressInfo } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { inject } from 'vitest';
import { appOptionsFor, buildApp, type FlashserveApp } from '../../src/app.js';
import { resolveServeConfig, type ServeConfig } from '../../src/config.js';
import { loadRuntime, type Runtime } from '../../src/runtime/load-runtime.js';

export interface RealServer extends FlashserveApp {
  readonly baseUrl: string;
  readonly runtime: Runtime;
  readonly config: ServeConfig;
  close(): Promise<void>;
}

export function testEnv(): NodeJS.ProcessEnv {
  return { FLASHSERVE_CACHE_DIR: inject('cacheDir') };
}

/** `flags` are `flashserve serve` flags; host and port are always loopback and any free port. */
export async function startRealServer(flags: string[] = [], logger?: FastifyBaseLogger): Promise<RealServer> {
  const config = resolveServeConfig(
    [...flags, '--host', '127.0.0.1', '--port', '0', '--log-level', 'silent'],
    testEnv(),
  );
  const runtime = await loadRuntime(config, testEnv(), { log: { info() {}, warn() {} } });
  const built = buildApp({ ...appOptionsFor(runtime, config), ...(logger === undefined ? {} : { logger }) });
  await built.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (built.app.server.address() as AddressInfo).port;
  return {
    ...built,
    runtime,
    config,
    baseUrl: `http://127.0.0.1:${port}`,
    async close() {
      await runtime.engine.shutdown({ drainMs: 0 });
      await built.app.close();
      await runtime.close();
    },
  };
}

/** Polls until `check` holds (engine state settles at the next step boundary), bounded in time. */
export async function eventually(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
