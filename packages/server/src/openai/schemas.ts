// JSON schemas for every request body, checked by fastify's ajv before a handler runs. Types are
// strict (ajv's coercion is off: "5" is not a number) and ranges follow OpenAI, or vLLM where OpenAI
// is silent. `null` is accepted wherever a field is optional, as the Python client sends it.
// Limits that depend on the served model (vocabulary size, n, logprobs) are built in.
//
// NOTE: unknown fields are ignored rather than refused, as vLLM does: clients and SDKs send fields
// (tools, response_format, metadata) that we do not act on, and failing those would break them.

export interface SchemaLimits {
  /** Token ids must be below this. */
  readonly vocabSize: number;
  /** Largest `n`. */
  readonly maxN: number;
  /** Largest `logprobs` / `top_logprobs`. */
  readonly maxLogprobs: number;
}

/** Human descriptions of the fields whose schema is a union, used instead of ajv's "must match a
 * schema in anyOf". */
export const UNION_HINTS: Readonly<Record<string, string>> = {
  prompt:
    'prompt must be a string, an array of strings, an array of token ids or an array of token-id arrays',
  stop: 'stop must be a string or an array of non-empty strings',
  content: 'content must be a string or an array of text parts ({"type": "text", "text": "..."})',
};

/** What is wrong with a bad key of an object field whose keys are constrained (propertyNames). */
export const KEY_HINTS: Readonly<Record<string, string>> = {
  logit_bias: 'is not a token id (a decimal integer)',
};

type Schema = Record<string, unknown>;

const nullable = (s: Schema): Schema => ({ anyOf: [s, { type: 'null' }] });
const int = (minimum: number, maximum: number): Schema => nullable({ type: 'integer', minimum, maximum });
const num = (minimum: number, maximum: number): Schema => nullable({ type: 'number', minimum, maximum });
const bool: Schema = nullable({ type: 'boolean' });

// Counts beyond 2^31 are never meaningful; bounding them keeps huge numbers out of arithmetic.
const MAX_COUNT = 2 ** 31 - 1;
// The largest stop list and string lengths the server takes; bodies are also capped in bytes.
const MAX_STOP_STRINGS = 16;
// Most entries of one logit_bias (OpenAI takes up to 300; vLLM does not bound it).
const MAX_LOGIT_BIAS = 1024;

function sampling(limits: SchemaLimits): Record<string, Schema> {
  const tokenId: Schema = { type: 'integer', minimum: 0, maximum: limits.vocabSize - 1 };
  return {
    model: { type: 'string', maxLength: 512 },
    max_tokens: int(1, MAX_COUNT),
    temperature: num(0, 2),
    top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
    top_k: int(-1, MAX_COUNT),
    min_p: num(0, 1),
    n: int(1, limits.maxN),
    stop: {
      anyOf: [
        { type: 'null' },
        { type: 'string', minLength: 1, maxLength: 1024 },
        {
          type: 'array',
          maxItems: MAX_STOP_STRINGS,
          items: { type: 'string', minLength: 1, maxLength: 1024 },
        },
      ],
    },
    stop_token_ids: nullable({ type: 'array', maxItems: 1024, items: tokenId }),
    seed: int(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
    presence_penalty: num(-2, 2),
    frequency_penalty: num(-2, 2),
    repetition_penalty: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 10 }),
    ignore_eos: bool,
    min_tokens: int(0, MAX_COUNT),
    prompt_logprobs: int(0, limits.maxLogprobs),
    skip_special_tokens: bool,
    return_token_ids: bool,
    stream: bool,
    stream_options: nullable({
      type: 'object',
      properties: { include_usage: bool, continuous_usage_stats: bool },
    }),
    // Keys are token ids as decimal strings (JSON object keys), as OpenAI's; their range against the
    // vocabulary is checked with the rest of the request (core's validateRequest).
    logit_bias: nullable({
      type: 'object',
      maxProperties: MAX_LOGIT_BIAS,
      propertyNames: { pattern: '^(0|[1-9][0-9]{0,9})$' },
      additionalProperties: { type: 'number', minimum: -100, maximum: 100 },
    }),
    user: nullable({ type: 'string', maxLength: 1024 }),
  };
}

export function completionSchema(limits: SchemaLimits): Schema {
  const tokenId: Schema = { type: 'integer', minimum: 0, maximum: limits.vocabSize - 1 };
  return {
    type: 'object',
    required: ['prompt'],
    properties: {
      ...sampling(limits),
      prompt: {
        anyOf: [
          { type: 'string' },
          { type: 'array', minItems: 1, items: { type: 'string' } },
          { type: 'array', minItems: 1, items: tokenId },
          { type: 'array', minItems: 1, items: { type: 'array', minItems: 1, items: tokenId } },
        ],
      },
      logprobs: int(0, limits.maxLogprobs),
      echo: bool,
      suffix: { type: 'null' },
      best_of: nullable({ type: 'integer', minimum: 1, maximum: 1 }),
    },
  };
}

const chatContent: Schema = {
  anyOf: [
    { type: 'string' },
    {
      type: 'array',
      items: {
        type: 'object',
        required: ['type', 'text'],
        properties: { type: { const: 'text' }, text: { type: 'string' } },
      },
    },
  ],
};

export const messageSchema: Schema = {
  type: 'object',
  required: ['role', 'content'],
  properties: {
    role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
    content: chatContent,
    name: { type: 'string', maxLength: 256 },
  },
};

export function chatCompletionSchema(limits: SchemaLimits): Schema {
  return {
    type: 'object',
    required: ['messages'],
    properties: {
      ...sampling(limits),
      messages: { type: 'array', minItems: 1, items: messageSchema },
      max_completion_tokens: int(1, MAX_COUNT),
      logprobs: bool,
      top_logprobs: int(0, limits.maxLogprobs),
      add_generation_prompt: bool,
    },
  };
}

export function tokenizeSchema(): Schema {
  return {
    type: 'object',
    properties: {
      model: { type: 'string', maxLength: 512 },
      prompt: { type: 'string' },
      messages: { type: 'array', minItems: 1, items: messageSchema },
      add_special_tokens: { type: 'boolean' },
      add_generation_prompt: { type: 'boolean' },
    },
    oneOf: [{ required: ['prompt'] }, { required: ['messages'] }],
  };
}

export function detokenizeSchema(limits: SchemaLimits): Schema {
  return {
    type: 'object',
    required: ['tokens'],
    properties: {
      model: { type: 'string', maxLength: 512 },
      tokens: { type: 'array', items: { type: 'integer', minimum: 0, maximum: limits.vocabSize - 1 } },
    },
  };
}
