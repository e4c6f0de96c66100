// API-key check for the /v1 routes (as vLLM: /health, /metrics, /version and the tokenizer routes stay
// open). The key is compared in constant time: both sides are hashed to fixed-length digests first,
// so neither the comparison nor an early length mismatch leaks how much of a guess was right.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { authInvalidKey } from '../errors.js';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** True when the Authorization header carries `Bearer <apiKey>`. */
export function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
  // Hash even when the header is malformed so that every refusal costs the same time.
  const given = digest(match?.[1]?.trim() ?? '');
  return timingSafeEqual(given, expected) && match !== null;
}

export function registerAuth(app: FastifyInstance, apiKey: string | undefined): void {
  if (apiKey === undefined) return;
  const expected = digest(apiKey);
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/v1/') && request.url !== '/v1') return;
    if (!bearerMatches(request.headers.authorization, expected)) throw authInvalidKey();
  });
}
