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

/** Like defineError, for kinds whose OpenAI `param` (the offending request field) varies per call. */
export function defineParamError<A extends unknown[]>(
  code: string,
  type: OpenAiErrorType,
  status: number,
  format: (param: string, ...args: A) => string,
): ((param: string, ...args: A) => FlashserveError) & { readonly code: string } {
  const spec: ErrorSpec = { code, type, status };
  const make = (param: string, ...args: A) => new FlashserveError(spec, format(param, ...args), { param });
  return Object.assign(make, { code });
}

// --- engine requests ----------------------------------------------------------------------------
export const requestParamInvalid = registered(
  defineParamError(
    'FS_ERR_REQUEST_PARAM_INVALID',
    'invalid_request_error',
    400,
    (param: string, detail: string) => `invalid ${param}: ${detail}`,
  ),
);
export const requestPromptEmpty = registered(
  defineError(
    'FS_ERR_REQUEST_PROMPT_EMPTY',
    'invalid_request_error',
    400,
    () => 'the prompt is empty',
    'prompt',
  ),
);
export const requestTooLong = registered(
  defineError(
    'FS_ERR_REQUEST_TOO_LONG',
    'invalid_request_error',
    400,
    (limit: number, promptTokens: number, maxTokens: number) =>
      `this model's maximum context length is ${limit} tokens; the request asks for ` +
      `${promptTokens + maxTokens} (${promptTokens} in the prompt, ${maxTokens} to generate)`,
    'max_tokens',
  ),
);
export const requestExceedsKvCache = registered(
  defineError(
    'FS_ERR_REQUEST_EXCEEDS_KV_CACHE',
    'invalid_request_error',
    400,
    (neededBlocks: number, totalBlocks: number) =>
      `the request needs ${neededBlocks} KV cache blocks at its longest but the cache holds ${totalBlocks}`,
    'max_tokens',
  ),
);
export const requestDuplicateId = registered(
  defineError(
    'FS_ERR_REQUEST_DUPLICATE_ID',
    'invalid_request_error',
    400,
    (requestId: string) => `request id "${requestId}" is already in use`,
  ),
);

// --- engine -------------------------------------------------------------------------------------
export const engineOverloaded = registered(
  defineError(
    'FS_ERR_ENGINE_OVERLOADED',
    'service_unavailable_error',
    503,
    (limit: number) => `the server is overloaded: ${limit} requests are already waiting; retry later`,
  ),
);
export const engineShutDown = registered(
  defineError(
    'FS_ERR_ENGINE_SHUT_DOWN',
    'service_unavailable_error',
    503,
    () => 'the engine is shutting down and accepts no new requests',
  ),
);
export const engineModelFailed = registered(
  defineError(
    'FS_ERR_ENGINE_MODEL_FAILED',
    'server_error',
    500,
    (detail: string) => `the model failed during a forward pass: ${detail}`,
  ),
);
export const engineConfigInvalid = registered(
  defineError(
    'FS_ERR_ENGINE_CONFIG_INVALID',
    'server_error',
    500,
    (detail: string) => `invalid engine configuration: ${detail}`,
  ),
);

// --- loading (model directory: config, weights, tokenizer) ---------------------------------------
// Raised while a model loads, before any request exists; each message names the file and the problem.
export const loadFileMissing = registered(
  defineError(
    'FS_ERR_LOAD_FILE_MISSING',
    'server_error',
    500,
    (file: string, why: string) => `cannot load the model: ${file} is missing (${why})`,
  ),
);
export const loadFileMalformed = registered(
  defineError(
    'FS_ERR_LOAD_FILE_MALFORMED',
    'server_error',
    500,
    (file: string, detail: string) => `cannot load the model: ${file} is malformed: ${detail}`,
  ),
);
export const loadConfigUnsupported = registered(
  defineError(
    'FS_ERR_LOAD_CONFIG_UNSUPPORTED',
    'server_error',
    500,
    (file: string, detail: string) =>
      `cannot load the model: ${file} describes an unsupported model: ${detail}`,
  ),
);
export const loadTensorMissing = registered(
  defineError(
    'FS_ERR_LOAD_TENSOR_MISSING',
    'server_error',
    500,
    (name: string, where: string) => `cannot load the model: tensor "${name}" is not in ${where}`,
  ),
);
export const loadTensorMismatch = registered(
  defineError(
    'FS_ERR_LOAD_TENSOR_MISMATCH',
    'server_error',
    500,
    (name: string, file: string, detail: string) =>
      `cannot load the model: tensor "${name}" in ${file} does not fit the config: ${detail}`,
  ),
);
export const chatTemplateMissing = registered(
  defineError(
    'FS_ERR_CHAT_TEMPLATE_MISSING',
    'invalid_request_error',
    400,
    (dir: string) =>
      `this model has no chat template (neither tokenizer_config.json "chat_template" nor chat_template.jinja in ${dir}); use the completions API`,
  ),
);
export const engineStepFailed = registered(
  defineError(
    'FS_ERR_ENGINE_STEP_FAILED',
    'server_error',
    500,
    (detail: string) => `an engine step failed unexpectedly: ${detail}`,
  ),
);

// --- distributed (tensor parallelism) -------------------------------------------------------------
export const distributedConfigInvalid = registered(
  defineError(
    'FS_ERR_DISTRIBUTED_CONFIG_INVALID',
    'server_error',
    500,
    (detail: string) => `tensor parallelism cannot run this configuration: ${detail}`,
  ),
);
export const distributedWorkerFailed = registered(
  defineError(
    'FS_ERR_DISTRIBUTED_WORKER_FAILED',
    'server_error',
    500,
    (detail: string) => `a tensor-parallel worker failed: ${detail}`,
  ),
);
export const distributedTimeout = registered(
  defineError(
    'FS_ERR_DISTRIBUTED_TIMEOUT',
    'server_error',
    500,
    (detail: string) => `a tensor-parallel collective timed out: ${detail}`,
  ),
);
export const distributedGroupBroken = registered(
  defineError(
    'FS_ERR_DISTRIBUTED_GROUP_BROKEN',
    'service_unavailable_error',
    503,
    (reason: string) =>
      `the tensor-parallel group is broken and serves no more steps (restart the server): ${reason}`,
  ),
);
export const distributedUnavailable = registered(
  defineError(
    'FS_ERR_DISTRIBUTED_UNAVAILABLE',
    'server_error',
    500,
    (what: string, reason: string) => `${what} is unavailable: ${reason}`,
  ),
);
