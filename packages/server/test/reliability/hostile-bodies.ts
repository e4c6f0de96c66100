// Generated request bodies that are wrong by construction, for both POST endpoints: each starts from a
// valid body and breaks it one way (a field of the wrong type or out of range, a required field gone,
// deep nesting, invalid UTF-8, an oversized string, random bytes, a wrong content type). The server
// must answer every one with a 4xx in OpenAI's error shape, and nothing else may happen to it.

import fc from 'fast-check';

export interface HostileBody {
  readonly kind: string;
  readonly contentType: string | undefined;
  readonly body: Uint8Array;
}

export type Endpoint = 'completions' | 'chat';

const enc = (s: string) => new TextEncoder().encode(s);
const json = (kind: string, value: unknown): HostileBody => ({
  kind,
  contentType: 'application/json',
  body: enc(JSON.stringify(value)),
});

const base = (endpoint: Endpoint): Record<string, unknown> =>
  endpoint === 'completions'
    ? { prompt: 'hi', max_tokens: 1 }
    : { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 };

/** Values that are not numbers (null excluded: it means "default" for optional fields). */
const notANumber = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.boolean(),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
);
// NOTE: no NaN or infinities: JSON.stringify turns them into null, which is valid (the default).
const notABoolean = fc.oneof(
  fc.string({ maxLength: 10 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.array(fc.boolean(), { maxLength: 2 }),
);

/** A number outside [min, max], or a fraction for an integer field, or another type. */
function badNumber(min: number, max: number, integer: boolean): fc.Arbitrary<unknown> {
  const options: fc.Arbitrary<unknown>[] = [
    notANumber,
    fc.double({ min: -1e308, max: min, noNaN: true, maxExcluded: true }),
    fc.constantFrom(-1e308, min - 1, max + 1, 1e308),
  ];
  if (max < 1e300) options.push(fc.double({ min: max, max: 1e308, noNaN: true, minExcluded: true }));
  if (integer) options.push(fc.double({ min: Math.max(min, -1e6), max: Math.min(max, 1e6), noNaN: true }));
  // Judged after a JSON round trip, which is what the server sees: -0 arrives as 0, a valid value.
  return fc.oneof(...options).filter((v) => {
    const seen: unknown = JSON.parse(JSON.stringify(v));
    return typeof seen !== 'number' || seen < min || seen > max || (integer && !Number.isInteger(seen));
  });
}

const NUMERIC_FIELDS: Record<string, [number, number, boolean]> = {
  max_tokens: [1, 2 ** 31 - 1, true],
  temperature: [0, 2, false],
  top_k: [-1, 2 ** 31 - 1, true],
  min_p: [0, 1, false],
  presence_penalty: [-2, 2, false],
  frequency_penalty: [-2, 2, false],
  min_tokens: [0, 2 ** 31 - 1, true],
  seed: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true],
};
const BOOLEAN_FIELDS = ['ignore_eos', 'skip_special_tokens', 'stream', 'return_token_ids'];

function wrongField(endpoint: Endpoint, maxN: number, vocabSize: number): fc.Arbitrary<HostileBody> {
  const numeric = Object.entries(NUMERIC_FIELDS).map(([field, [min, max, integer]]) =>
    badNumber(min, max, integer).map((v) => json(`bad ${field}`, { ...base(endpoint), [field]: v })),
  );
  const extra: fc.Arbitrary<HostileBody>[] = [
    // top_p is in (0, 1] and n in [1, maxN]: their lower edges are excluded or 1.
    fc
      .oneof(notANumber, fc.constantFrom(0, -0.5, 1.5, 1e308))
      .map((v) => json('bad top_p', { ...base(endpoint), top_p: v })),
    fc
      .oneof(notANumber, fc.integer({ min: maxN + 1 }), fc.integer({ max: 0 }))
      .map((v) => json('bad n', { ...base(endpoint), n: v })),
    fc
      .oneof(notANumber, fc.constantFrom(0, -1, 11, 1e308))
      .map((v) => json('bad repetition_penalty', { ...base(endpoint), repetition_penalty: v })),
    fc
      .oneof(fc.integer(), fc.boolean(), fc.string({ minLength: 513, maxLength: 600 }))
      .map((v) => json('bad model', { ...base(endpoint), model: v })),
    fc
      .oneof(
        fc.integer(),
        fc.constant(''),
        fc.array(fc.integer(), { minLength: 1, maxLength: 3 }),
        fc.constant(['']),
        fc.array(fc.constant('x'), { minLength: 17, maxLength: 30 }),
        fc.string({ minLength: 1025, maxLength: 1100 }),
      )
      .map((v) => json('bad stop', { ...base(endpoint), stop: v })),
    fc
      .oneof(
        fc.integer(),
        fc.array(fc.integer({ min: vocabSize }), { minLength: 1, maxLength: 3 }),
        fc.array(fc.integer({ max: -1 }), { minLength: 1, maxLength: 3 }),
      )
      .map((v) => json('bad stop_token_ids', { ...base(endpoint), stop_token_ids: v })),
    fc
      .oneof(fc.integer(), fc.string(), fc.array(fc.boolean(), { maxLength: 2 }))
      .map((v) => json('bad stream_options', { ...base(endpoint), stream_options: v })),
  ];
  for (const field of BOOLEAN_FIELDS)
    extra.push(notABoolean.map((v) => json(`bad ${field}`, { ...base(endpoint), [field]: v })));
  if (endpoint === 'completions') {
    extra.push(
      fc
        .oneof(
          fc.integer({ min: 21 }),
          fc.integer({ max: -1 }),
          notANumber.filter((v) => typeof v !== 'boolean'),
        )
        .map((v) => json('bad logprobs', { ...base(endpoint), logprobs: v })),
      notABoolean.map((v) => json('bad echo', { ...base(endpoint), echo: v })),
      fc
        .oneof(
          fc.integer(),
          fc.boolean(),
          fc.constant(null),
          fc.constant([]),
          fc.constant([[]]),
          fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 })),
          fc.tuple(fc.integer({ min: 0, max: 100 }), fc.string()),
          fc.array(fc.integer({ min: vocabSize }), { minLength: 1, maxLength: 4 }),
          fc.array(fc.integer({ max: -1 }), { minLength: 1, maxLength: 4 }),
          fc.array(fc.double({ noInteger: true, noNaN: true, noDefaultInfinity: true }), {
            minLength: 1,
            maxLength: 4,
          }),
          fc.array(fc.array(fc.string(), { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 2 }),
        )
        .map((v) => json('bad prompt', { ...base(endpoint), prompt: v })),
    );
  } else {
    const badMessage = fc.oneof(
      fc.integer(),
      fc.string(),
      fc.constant(null),
      fc.record({
        role: fc.string().filter((r) => !['system', 'developer', 'user', 'assistant', 'tool'].includes(r)),
        content: fc.constant('x'),
      }),
      fc.record({ role: fc.constant('user') }),
      fc.record({
        role: fc.constant('user'),
        content: fc.oneof(fc.integer(), fc.boolean(), fc.constant(null)),
      }),
      fc.record({
        role: fc.constant('user'),
        content: fc.array(fc.record({ type: fc.constant('image_url'), text: fc.string() }), {
          minLength: 1,
          maxLength: 2,
        }),
      }),
      fc.record({
        role: fc.constant('user'),
        content: fc.array(fc.integer(), { minLength: 1, maxLength: 2 }),
      }),
    );
    extra.push(
      fc
        .oneof(
          fc.constant([]),
          fc.integer(),
          fc.string(),
          fc.dictionary(fc.string({ maxLength: 4 }), fc.integer()),
          fc.array(badMessage, { minLength: 1, maxLength: 3 }),
        )
        .map((v) => json('bad messages', { ...base(endpoint), messages: v })),
      notABoolean.map((v) => json('bad logprobs', { ...base(endpoint), logprobs: v })),
      fc
        .oneof(fc.integer({ min: 21 }), fc.integer({ max: -1 }))
        .map((v) => json('bad top_logprobs', { ...base(endpoint), logprobs: true, top_logprobs: v })),
      fc
        .oneof(fc.integer({ max: 0 }), notANumber)
        .map((v) => json('bad max_completion_tokens', { ...base(endpoint), max_completion_tokens: v })),
    );
  }
  return fc.oneof(...numeric, ...extra);
}

/** A body without its required field, with unrelated extra keys. */
function missingRequired(endpoint: Endpoint): fc.Arbitrary<HostileBody> {
  const required = endpoint === 'completions' ? 'prompt' : 'messages';
  return fc
    .dictionary(
      fc.string({ maxLength: 8 }).filter((k) => k !== required && k !== '__proto__'),
      fc.jsonValue({ maxDepth: 2 }),
      { maxKeys: 4 },
    )
    .map((extra) => json(`missing ${required}`, { ...extra, max_tokens: 1 }));
}

/** Arrays or objects nested thousands deep in the required field. */
function deepNesting(endpoint: Endpoint): fc.Arbitrary<HostileBody> {
  const field = endpoint === 'completions' ? 'prompt' : 'messages';
  return fc.tuple(fc.integer({ min: 100, max: 20_000 }), fc.boolean()).map(([depth, arrays]) => {
    const open = arrays ? '['.repeat(depth) : '{"a":'.repeat(depth);
    const close = arrays ? ']'.repeat(depth) : `1${'}'.repeat(depth)}`;
    return {
      kind: 'deep nesting',
      contentType: 'application/json',
      body: enc(`{"${field}": ${open}${close}, "max_tokens": 1}`),
    };
  });
}

/** Invalid UTF-8 inside a string (with another field broken, as the string alone decodes to U+FFFD)
 * or outside any string (a parse error). */
function invalidUtf8(endpoint: Endpoint): fc.Arbitrary<HostileBody> {
  const badBytes = fc.constantFrom(
    [0xff],
    [0xc3],
    [0xe2, 0x82],
    [0xf0, 0x9f, 0x98],
    [0xed, 0xa0, 0x80],
    [0xc0, 0xaf],
    [0xfe, 0xfe],
  );
  return fc
    .tuple(fc.array(badBytes, { minLength: 1, maxLength: 5 }), fc.boolean())
    .map(([chunks, inString]) => {
      const bytes = Uint8Array.from(chunks.flat());
      const field = endpoint === 'completions' ? '"prompt": "' : '"messages": [{"role": "user", "content": "';
      const close = endpoint === 'completions' ? '"' : '"}]';
      const head = inString ? `{${field}` : '{"max_tokens": 1, ';
      const tail = inString ? `${close}, "max_tokens": -7}` : '}';
      return {
        kind: 'invalid utf-8',
        contentType: 'application/json',
        body: Buffer.concat([enc(head), bytes, enc(tail)]),
      };
    });
}

/** Strings past the body limit (413) or past a field's own limit (400). */
function oversized(endpoint: Endpoint, bodyLimit: number): fc.Arbitrary<HostileBody> {
  return fc.integer({ min: bodyLimit + 1, max: bodyLimit * 2 }).map((size) => {
    const field = endpoint === 'completions' ? 'prompt' : 'user';
    return json('oversized body', { ...base(endpoint), [field]: 'x'.repeat(size) });
  });
}

const randomBytes: fc.Arbitrary<HostileBody> = fc.uint8Array({ maxLength: 2048 }).map((body) => ({
  kind: 'random bytes',
  contentType: 'application/json',
  body,
}));

const wrongContentType = (endpoint: Endpoint): fc.Arbitrary<HostileBody> =>
  fc
    .constantFrom(
      'application/xml',
      'multipart/form-data; boundary=x',
      'application/x-www-form-urlencoded',
      'image/png',
      undefined,
    )
    .map((contentType) => ({
      kind: 'wrong content type',
      contentType,
      body: enc(JSON.stringify({ ...base(endpoint), max_tokens: -1 })),
    }));

/** JSON that parses but is not an object. */
const notAnObject: fc.Arbitrary<HostileBody> = fc
  .oneof(
    fc.integer(),
    fc.string(),
    fc.constant(null),
    fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
    fc.boolean(),
  )
  .map((v) => json('not an object', v));

export function hostileBodies(
  endpoint: Endpoint,
  limits: { maxN: number; vocabSize: number; bodyLimit: number },
): fc.Arbitrary<HostileBody> {
  return fc.oneof(
    { weight: 40, arbitrary: wrongField(endpoint, limits.maxN, limits.vocabSize) },
    { weight: 8, arbitrary: missingRequired(endpoint) },
    { weight: 4, arbitrary: deepNesting(endpoint) },
    { weight: 8, arbitrary: invalidUtf8(endpoint) },
    { weight: 1, arbitrary: oversized(endpoint, limits.bodyLimit) },
    { weight: 10, arbitrary: randomBytes },
    { weight: 4, arbitrary: wrongContentType(endpoint) },
    { weight: 5, arbitrary: notAnObject },
  );
}
