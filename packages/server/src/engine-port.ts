// What the HTTP layer needs from an engine: the slice of @flashserve/core's Engine it calls. Routes
// depend on this interface rather than on the class so the app can be built around any engine that
// keeps the protocol (core's Engine in production, a scripted one in a unit test).

import type { AddRequestInput, EngineStats, RequestHandle, RequestOutput } from '@flashserve/core';

/** The engine events the server listens to (metrics): every output, and each request's last. */
export interface EngineEventSource {
  on(event: 'output' | 'finished', fn: (out: RequestOutput) => void): unknown;
  off(event: 'output' | 'finished', fn: (out: RequestOutput) => void): unknown;
}

export interface ServingEngine {
  readonly events: EngineEventSource;
  /** Throws a FlashserveError (e.g. 503 when the waiting queue is full) instead of queueing. */
  addRequest(input: AddRequestInput): RequestHandle;
  abort(requestId: string): void;
  stats(): EngineStats;
  shutdown(opts?: { drainMs?: number }): Promise<void>;
}
