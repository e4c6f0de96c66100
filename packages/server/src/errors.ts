// Every error @flashserve/server creates is defined here: a stable code (FS_ERR_<AREA>_<WHAT>), a
// message, the OpenAI error `type` and the HTTP status. Handlers throw these by name and never pick a
// status themselves; the error-handler plugin turns any of them (and core's) into OpenAI's shape.
// docs/errors.md lists every code under "@flashserve/server" (test/errors-doc.test.ts keeps them in step).

import { defineError } from '@flashserve/core';

/** Every code below, in definition order, for the docs test. */
export const SERVER_ERROR_CODES: string[] = [];
function registered<T extends { readonly code: string }>(e: T): T {
  SERVER_ERROR_CODES.push(e.code);
  return e;
}

// --- request bodies ----------------------------------------------------------------------------
export const requestInvalid = registered(
  defineError('FS_ERR_REQUEST_INVALID', 'invalid_request_error', 400, (message: string) => message),
);
export const requestInvalidJson = registered(
  defineError(
    'FS_ERR_REQUEST_INVALID_JSON',
    'invalid_request_error',
    400,
    (detail: string) => `the request body is not valid JSON: ${detail}`,
  ),
);
export const requestContentType = registered(
  defineError(
    'FS_ERR_REQUEST_CONTENT_TYPE',
    'invalid_request_error',
    415,
    (contentType: string) => `unsupported content type "${contentType}"; send application/json`,
  ),
);
export const requestTooLarge = registered(
  defineError(
    'FS_ERR_REQUEST_TOO_LARGE',
    'invalid_request_error',
    413,
    (limitBytes: number) => `the request body is larger than the server accepts (${limitBytes} bytes)`,
  ),
);
export const requestPromptTooLong = registered(
  defineError(
    'FS_ERR_REQUEST_PROMPT_TOO_LONG',
    'invalid_request_error',
    400,
    (maxModelLen: number, promptTokens: number, maxTokens: number) =>
      `This model's maximum context length is ${maxModelLen} tokens. However, you requested ` +
      `${promptTokens + maxTokens} tokens (${promptTokens} in the prompt, ${maxTokens} in the completion). ` +
      `Please reduce the length of the prompt or the completion.`,
  ),
);
export const requestNoTokenizer = registered(
  defineError(
    'FS_ERR_REQUEST_NO_TOKENIZER',
    'invalid_request_error',
    400,
    (what: string) => `${what} needs a tokenizer, and the server runs with --skip-tokenizer-init`,
  ),
);
export const requestMalformedHttp = registered(
  defineError(
    'FS_ERR_REQUEST_MALFORMED_HTTP',
    'invalid_request_error',
    400,
    (detail: string) => `malformed HTTP request: ${detail}`,
  ),
);
export const requestHeadersTooLarge = registered(
  defineError(
    'FS_ERR_REQUEST_HEADERS_TOO_LARGE',
    'invalid_request_error',
    431,
    () => 'the request headers are larger than the server accepts',
  ),
);
export const requestTimeout = registered(
  defineError(
    'FS_ERR_REQUEST_TIMEOUT',
    'invalid_request_error',
    408,
    () => 'the request was not received in time',
  ),
);

// --- authentication ----------------------------------------------------------------------------
export const authInvalidKey = registered(
  defineError(
    'FS_ERR_AUTH_INVALID_KEY',
    'authentication_error',
    401,
    () => 'missing or invalid API key; send "Authorization: Bearer <key>"',
  ),
);

// --- lookups -----------------------------------------------------------------------------------
export const modelNotFound = registered(
  defineError(
    'FS_ERR_MODEL_NOT_FOUND',
    'not_found_error',
    404,
    (name: string, served: string) => `The model "${name}" does not exist; this server serves "${served}"`,
    'model',
  ),
);
export const routeNotFound = registered(
  defineError(
    'FS_ERR_ROUTE_NOT_FOUND',
    'not_found_error',
    404,
    (method: string, url: string) => `no route ${method} ${url}`,
  ),
);

// --- the server's own state --------------------------------------------------------------------
export const serverDraining = registered(
  defineError(
    'FS_ERR_SERVER_DRAINING',
    'service_unavailable_error',
    503,
    () => 'the server is shutting down and accepts no new requests',
  ),
);
export const serverInternal = registered(
  defineError(
    'FS_ERR_SERVER_INTERNAL',
    'server_error',
    500,
    (detail: string) => `internal server error: ${detail}`,
  ),
);
export const serverRequestFailed = registered(
  defineError(
    'FS_ERR_SERVER_REQUEST_FAILED',
    'server_error',
    500,
    (detail: string) => `the engine failed this request: ${detail}`,
  ),
);

// --- configuration (CLI, env, --config file) ---------------------------------------------------
export const configUnknownFlag = registered(
  defineError(
    'FS_ERR_CONFIG_UNKNOWN_FLAG',
    'invalid_request_error',
    400,
    (flag: string) => `unknown option ${flag}`,
  ),
);
export const configInvalidValue = registered(
  defineError(
    'FS_ERR_CONFIG_INVALID_VALUE',
    'invalid_request_error',
    400,
    (source: string, expected: string, got: string) => `${source}: expected ${expected}, got "${got}"`,
  ),
);
export const configFile = registered(
  defineError(
    'FS_ERR_CONFIG_FILE',
    'invalid_request_error',
    400,
    (path: string, detail: string) => `--config ${path}: ${detail}`,
  ),
);
export const configDeviceUnavailable = registered(
  defineError(
    'FS_ERR_CONFIG_DEVICE_UNAVAILABLE',
    'invalid_request_error',
    400,
    (device: string, reason: string) => `--device ${device} is unavailable: ${reason}`,
  ),
);
export const configModel = registered(
  defineError(
    'FS_ERR_CONFIG_MODEL',
    'invalid_request_error',
    400,
    (dir: string, detail: string) => `--model ${dir}: ${detail}`,
  ),
);

export const configListen = registered(
  defineError(
    'FS_ERR_CONFIG_LISTEN',
    'invalid_request_error',
    400,
    (address: string, detail: string) => `cannot listen on ${address}: ${detail}`,
  ),
);

// --- bench -------------------------------------------------------------------------------------
export const benchDataset = registered(
  defineError(
    'FS_ERR_BENCH_DATASET',
    'invalid_request_error',
    400,
    (path: string, detail: string) => `--dataset-path ${path}: ${detail}`,
  ),
);
export const benchServerUnreachable = registered(
  defineError(
    'FS_ERR_BENCH_SERVER_UNREACHABLE',
    'server_error',
    500,
    (url: string, detail: string) => `cannot reach ${url}: ${detail}`,
  ),
);
