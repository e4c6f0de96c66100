// Errors fastify meets before any route or hook runs: a URL that cannot be decoded (its
// "framework errors") and a connection whose bytes are not valid HTTP (Node's 'clientError'). Both
// get OpenAI's shape like every other answer. For the second there is no request object, so the
// response is written to the socket by hand before it is closed.

import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FlashserveError } from '@flashserve/core';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { requestHeadersTooLarge, requestMalformedHttp, requestTimeout } from '../errors.js';
import { errorBody, sendError } from './error-handler.js';

export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const detail = error.code === 'FST_ERR_BAD_URL' ? 'the URL cannot be decoded' : error.message.slice(0, 200);
  sendError(reply, requestMalformedHttp(detail));
}

export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  // A reset connection has nobody left to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let error: FlashserveError;
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') error = requestTimeout();
  else if (err.code === 'HPE_HEADER_OVERFLOW') error = requestHeadersTooLarge();
  else error = requestMalformedHttp('the bytes received are not a valid HTTP/1.1 request');
  const body = JSON.stringify(errorBody(error));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? 'Error'}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
