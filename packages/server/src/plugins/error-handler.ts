// The one place an error becomes an HTTP answer. Every route, hook, body parser and the schema
// validator end up here, and every answer has OpenAI's shape {"error": {message, type, param, code}}.
// Our own FlashserveErrors (server and core) carry their status; fastify's own errors (body parsing,
// validation, limits) are mapped to our codes; anything else is a 500 whose detail goes to the log,
// never to the client.

import { FlashserveError } from '@flashserve/core';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import {
  requestContentType,
  requestInvalid,
  requestInvalidJson,
  requestTooLarge,
  routeNotFound,
  serverInternal,
} from '../errors.js';
import type { OpenAiErrorBody } from '../openai/types.js';
import { fromValidation, type ValidationIssue } from '../openai/validation-message.js';

/** Seconds a client should wait after a 503 before retrying. */
export const RETRY_AFTER_SECONDS = 1;

/** Maps any thrown value to a FlashserveError; `internal` is true when the detail must stay private. */
export function toFlashserveError(
  err: unknown,
  ctx: { bodyLimit: number; contentType: string | undefined },
): { error: FlashserveError; internal: boolean } {
  // A 503 (overloaded, draining) is the server working as designed, not a failure to log.
  if (err instanceof FlashserveError)
    return { error: err, internal: err.status >= 500 && err.status !== 503 };
  const fe = err as Partial<FastifyError> & { validation?: ValidationIssue[] };
  if (Array.isArray(fe.validation)) return { error: fromValidation(fe.validation), internal: false };
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { error: requestTooLarge(ctx.bodyLimit), internal: false };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { error: requestContentType((ctx.contentType ?? '').slice(0, 100)), internal: false };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { error: requestInvalidJson('the body is empty'), internal: false };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { error: requestInvalidJson('it could not be parsed'), internal: false };
  }
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    // Body parse failures (SyntaxError from JSON.parse, prototype poisoning) arrive as plain 400s.
    const detail = typeof fe.message === 'string' ? fe.message.slice(0, 200) : 'malformed request';
    if (err instanceof SyntaxError) return { error: requestInvalidJson(detail), internal: false };
    return { error: Object.assign(requestInvalid(detail), { status }), internal: false };
  }
  return { error: serverInternal('see the server log'), internal: true };
}

export function errorBody(error: FlashserveError): OpenAiErrorBody {
  return {
    error: { message: error.message, type: error.type, param: error.param ?? null, code: error.code },
  };
}

/** Sends `error` on a reply that has not started (adds Retry-After to 503s). */
export function sendError(reply: FastifyReply, error: FlashserveError): FastifyReply {
  if (error.status === 503) reply.header('retry-after', String(RETRY_AFTER_SECONDS));
  return reply.code(error.status).type('application/json; charset=utf-8').send(errorBody(error));
}

export function registerErrorHandler(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((err, request, reply) => {
    const contentType = request.headers['content-type'];
    const { error, internal } = toFlashserveError(err, { bodyLimit, contentType });
    if (internal) request.log.error({ err }, 'request failed');
    else request.log.debug({ code: error.code, status: error.status }, error.message);
    return sendError(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, routeNotFound(request.method, (request.url.split('?')[0] ?? '').slice(0, 200))),
  );
}
