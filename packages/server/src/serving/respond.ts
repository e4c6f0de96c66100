// The two ways a generation reaches its client. Both abort the engine requests when the client goes
// away before the answer is complete, so their KV blocks return at the next step boundary.

import type { FastifyReply } from 'fastify';
import { SseWriter } from '../openai/sse.js';
import { errorBody, toFlashserveError } from '../plugins/error-handler.js';
import type { Generation } from './generation.js';

/** Non-streaming: a disconnect while the engine works aborts it (nobody will read the answer). */
export function abortOnDisconnect(reply: FastifyReply, generation: Generation): void {
  // The socket may already be gone (the client left while the prompt was being prepared).
  if (reply.raw.destroyed) {
    generation.abort();
    return;
  }
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) generation.abort();
  });
}

/** Streaming: takes over the socket, runs `produce` with an SSE writer, and ends with [DONE]. An
 * error thrown by `produce` after the headers are out becomes an error event. */
export async function respondWithStream(
  reply: FastifyReply,
  generation: Generation,
  produce: (sse: SseWriter) => Promise<void>,
): Promise<void> {
  reply.hijack();
  const sse = new SseWriter(reply.raw);
  sse.onDisconnect(() => generation.abort());
  sse.start();
  try {
    await produce(sse);
  } catch (err) {
    const { error, internal } = toFlashserveError(err, { bodyLimit: 0, contentType: undefined });
    if (internal) reply.log.error({ err }, 'stream failed');
    await sse.send(errorBody(error));
  } finally {
    // Whatever happened, nothing may keep generating for a stream that is over.
    generation.abort();
  }
  await sse.done();
}
