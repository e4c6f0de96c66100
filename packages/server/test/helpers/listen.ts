// Starts an app on a real loopback port for the official client to talk to.

import type { AddressInfo } from 'node:net';
import { type AppOptions, buildApp, type FlashserveApp } from '../../src/app.js';

export interface Listening extends FlashserveApp {
  readonly baseUrl: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function listen(opts: AppOptions): Promise<Listening> {
  const built = buildApp(opts);
  await built.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (built.app.server.address() as AddressInfo).port;
  return { ...built, port, baseUrl: `http://127.0.0.1:${port}`, close: () => built.app.close() };
}
