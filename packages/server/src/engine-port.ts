// What the HTTP layer needs from an engine: the slice of @flashserve/core's Engine it calls. Routes
// depend on this interface rather than on the class so the app can be built around any engine that
// keeps the protocol (core's Engine in production, a scripted one in a unit test).

import type { AddRequestInput, EngineEvents, EngineStats, RequestHandle } from '@flashserve/core';

export interface EngineEventSource {
  on<E extends keyof EngineEvents>(event: E, fn: EngineEvents[E]): unknown;
  off<E extends keyof EngineEvents>(event: E, fn: EngineEvents[E]): unknown;
}

export interface ServingEngine {
  readonly events: EngineEventSource;
  /** Throws a FlashserveError (e.g. 503 when the waiting queue is full) instead of queueing. */
  addRequest(input: AddRequestInput): RequestHandle;
  abort(requestId: string): void;
  stats(): EngineStats;
  shutdown(opts?: { drainMs?: number }): Promise<void>;
}
