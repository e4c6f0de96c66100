// Every error @flashserve/core throws is created here: a stable code (FS_ERR_<AREA>_<WHAT>), a message,
// the OpenAI error `type` and the HTTP status a server should answer with. Call sites use the
// constructors below; docs/errors.md lists every code (a test keeps the two in step).

export type OpenAiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable_error';

export interface ErrorSpec {
  readonly code: string;
  readonly type: OpenAiErrorType;
  readonly status: number;
}

export class FlashserveError extends Error {
  readonly code: string;
  readonly type: OpenAiErrorType;
  readonly status: number;
  /** The request field the error is about, when there is one (OpenAI's `param`). */
  readonly param: string | undefined;

  constructor(spec: ErrorSpec, message: string, options?: { param?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FlashserveError';
    this.code = spec.code;
    this.type = spec.type;
    this.status = spec.status;
    this.param = options?.param;
  }
}

/** Defines an error kind once; the returned function builds instances with a formatted message. */
export function defineError<A extends unknown[]>(
  code: string,
  type: OpenAiErrorType,
  status: number,
  format: (...args: A) => string,
  param?: string,
): ((...args: A) => FlashserveError) & { readonly code: string } {
  const spec: ErrorSpec = { code, type, status };
  const make = (...args: A) =>
    new FlashserveError(spec, format(...args), param === undefined ? {} : { param });
  return Object.assign(make, { code });
}

/** Every code defined through `defineError`, for the docs test. Each area section appends here. */
export const ERROR_CODES: string[] = [];
function registered<T extends { readonly code: string }>(e: T): T {
  ERROR_CODES.push(e.code);
  return e;
}

// --- attention backends -------------------------------------------------------------------------
export const backendUnknown = registered(
  defineError(
    'FS_ERR_BACKEND_UNKNOWN',
    'invalid_request_error',
    400,
    (name: string, available: string) => `unknown attention backend "${name}"; available: ${available}`,
  ),
);
export const backendUnsupported = registered(
  defineError(
    'FS_ERR_BACKEND_UNSUPPORTED',
    'invalid_request_error',
    400,
    (detail: string) => `no attention backend can run this configuration:\n${detail}`,
  ),
);
