// The HTTP half of gpu-e2e.sh: queries a running `flashserve serve` with the official `openai`
// client, on the GPU-shaped fixture (no tokenizer: prompts are token ids, outputs come back as
// `token_ids`). Checks:
//   - solo greedy completions (max_tokens 12, temperature 0, ignore_eos) of the fixture's two
//     prompts equal transformers' greedy continuation for >= 8 tokens;
//   - the first position's 20 top logprobs (the most the API returns; full logits are checked by
//     model-check.ts) against log_softmax of transformers' last-position logits;
//   - echo with logprobs: the fixture prompt plus transformers' first greedy token, scored as a
//     prompt: that token's logprob against transformers' log_softmax (prompt logprobs on the GPU);
//   - the same first prompt streamed (SSE) gives the same tokens;
//   - 8 concurrent requests of lengths 1..200 (the server runs with a small token budget, so long
//     prompts are prefilled in chunks in the same steps as other requests' decodes): the fixture
//     prompts still equal transformers, and every request equals its own solo completion.
// Usage: node client.mjs <baseUrl> <fixtureDir> <label>; prints rows, writes $OUT/client-<label>.json.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadDeepseekConfig } from '@flashserve/core';
import OpenAI from 'openai';
import {
  fmt,
  GREEDY_MIN,
  loadExpected,
  logSoftmax,
  printRows,
  type Row,
  samePrefix,
  syntheticPrompt,
} from './common.js';

const MAX_TOKENS = 12;
const TOP = 20;
const LOGPROB_TOL = 0.1;

interface Completion {
  readonly tokens: number[];
  /** token id -> logprob at the first generated position */
  readonly firstTop: Map<number, number>;
  /** Per generated position, token id -> logprob (when logprobs were asked for). */
  readonly allTop: Record<string, number>[];
}

type Body = OpenAI.Completions.CompletionCreateParamsNonStreaming & {
  ignore_eos: boolean;
  return_token_ids: boolean;
};

function parseTokenKey(k: string): number {
  const m = /^token_id:(\d+)$/.exec(k);
  if (!m) throw new Error(`unexpected logprobs key ${k}`);
  return Number(m[1]);
}

async function complete(client: OpenAI, model: string, prompt: number[], logprobs = 0): Promise<Completion> {
  const body: Body = {
    model,
    prompt,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    ignore_eos: true,
    return_token_ids: true,
    ...(logprobs > 0 ? { logprobs } : {}),
  };
  const res = await client.completions.create(body);
  const choice = res.choices[0] as (typeof res.choices)[0] & { token_ids?: number[] };
  if (!choice.token_ids) throw new Error('response has no token_ids');
  const firstTop = new Map<number, number>();
  const top0 = choice.logprobs?.top_logprobs?.[0];
  if (top0) for (const [k, v] of Object.entries(top0)) firstTop.set(parseTokenKey(k), v);
  const allTop = (choice.logprobs?.top_logprobs ?? []).map((m) =>
    Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [String(parseTokenKey(k)), v])),
  );
  return { tokens: choice.token_ids, firstTop, allTop };
}

async function completeStreamed(client: OpenAI, model: string, prompt: number[]): Promise<number[]> {
  const body = {
    model,
    prompt,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    ignore_eos: true,
    return_token_ids: true,
    stream: true as const,
  };
  const stream = await client.completions.create(body);
  const out: number[] = [];
  for await (const chunk of stream) {
    const c = chunk.choices[0] as ((typeof chunk.choices)[0] & { token_ids?: number[] }) | undefined;
    if (c?.token_ids) out.push(...c.token_ids);
  }
  return out;
}

async function main(): Promise<number> {
  const [baseUrl, dir, label = 'server'] = process.argv.slice(2);
  if (baseUrl === undefined || dir === undefined) {
    console.log('usage: node client.mjs <baseUrl> <fixtureDir> <label>');
    return 2;
  }
  const exp = loadExpected(dir);
  const vocab = loadDeepseekConfig(dir).vocabSize;
  const client = new OpenAI({ baseURL: baseUrl, apiKey: 'unused', maxRetries: 0, timeout: 30_000 });
  const models = await client.models.list();
  const model = models.data[0]?.id;
  if (model === undefined) throw new Error('the server lists no model');
  const rows: Row[] = [];
  const tag = `[${label}]`;

  // Solo requests, one at a time.
  const fixture = [
    { name: 'prompt 1', prompt: exp.prompt, greedy: exp.greedy, logits: exp.logits },
    { name: 'prompt 2', prompt: exp.prompt2, greedy: exp.greedy2, logits: exp.logits2 },
  ];
  // Everything the server returned, for gpu-e2e.sh's graphs mode to compare CUDA graphs vs eager.
  const dump: { name: string; tokens: number[]; top?: Record<string, number>[] }[] = [];
  for (const f of fixture) {
    const t0 = performance.now();
    const c = await complete(client, model, f.prompt, TOP);
    dump.push({ name: `solo ${f.name}`, tokens: c.tokens, top: c.allTop });
    const ms = performance.now() - t0;
    const same = samePrefix(c.tokens, f.greedy);
    rows.push({
      check: `${tag} HTTP ${f.name} (${f.prompt.length} tok) greedy equal to transformers`,
      value: `${same}/${f.greedy.length}`,
      limit: `>=${GREEDY_MIN}`,
      ok: same >= GREEDY_MIN && c.tokens.length === MAX_TOKENS,
      note: `${ms.toFixed(0)} ms; got ${c.tokens.join(',')}${same < f.greedy.length ? ` want ${f.greedy.join(',')}` : ''}`,
    });
    const ref = logSoftmax(f.logits);
    let worst = 0;
    for (const [id, lp] of c.firstTop) worst = Math.max(worst, Math.abs(lp - ref[id]!));
    const okTop = c.firstTop.size === TOP && worst <= LOGPROB_TOL;
    rows.push({
      check: `${tag} HTTP ${f.name} top-${TOP} logprobs vs transformers (max abs)`,
      value: fmt(worst),
      limit: fmt(LOGPROB_TOL),
      ok: okTop,
      ...(c.firstTop.size !== TOP ? { note: `${c.firstTop.size} entries` } : {}),
    });
  }
  // Prompt logprobs (echo with logprobs): the fixture prompt followed by transformers' first greedy
  // token, scored as a prompt; that token's logprob against transformers' log_softmax there.
  const next = exp.greedy[0]!;
  const echoed = await client.completions.create({
    model,
    prompt: [...exp.prompt, next],
    max_tokens: 1,
    temperature: 0,
    logprobs: 1,
    echo: true,
  });
  const echoLp = echoed.choices[0]?.logprobs;
  const gotLp = echoLp?.token_logprobs?.[exp.prompt.length];
  const echoErr = typeof gotLp === 'number' ? Math.abs(gotLp - logSoftmax(exp.logits)[next]!) : Number.NaN;
  rows.push({
    check: `${tag} HTTP echo + logprobs: a prompt token's logprob vs transformers`,
    value: fmt(echoErr),
    limit: fmt(LOGPROB_TOL),
    ok:
      echoErr <= LOGPROB_TOL &&
      echoLp?.token_logprobs?.[0] === null &&
      echoLp?.tokens?.length === exp.prompt.length + 2,
  });

  // logit_bias (rows with a bias go through the host sampler under CudaSampler): -100 on transformers'
  // first greedy token moves the first token off it; its top logprob stays the raw one.
  const biased = await client.completions.create({
    model,
    prompt: exp.prompt,
    max_tokens: 1,
    temperature: 0,
    logprobs: 1,
    return_token_ids: true,
    logit_bias: { [String(next)]: -100 },
  } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
  const biasedChoice = biased.choices[0] as (typeof biased.choices)[0] & { token_ids?: number[] };
  const biasedTop = Object.entries(biasedChoice.logprobs?.top_logprobs?.[0] ?? {})[0];
  const biasedTopErr =
    biasedTop !== undefined && parseTokenKey(biasedTop[0]) === next
      ? Math.abs(biasedTop[1] - logSoftmax(exp.logits)[next]!)
      : Number.NaN;
  rows.push({
    check: `${tag} HTTP logit_bias -100 on the greedy token: another token, raw top logprob vs transformers`,
    value: fmt(biasedTopErr),
    limit: fmt(LOGPROB_TOL),
    ok:
      biasedChoice.token_ids?.[0] !== undefined &&
      biasedChoice.token_ids[0] !== next &&
      biasedTopErr <= LOGPROB_TOL,
    note: `first token ${biasedChoice.token_ids?.[0]} (greedy ${next})`,
  });

  const streamed = await completeStreamed(client, model, exp.prompt);
  const sameStream = samePrefix(streamed, exp.greedy);
  rows.push({
    check: `${tag} HTTP prompt 1 streamed (SSE) greedy equal to transformers`,
    value: `${sameStream}/${exp.greedy.length}`,
    limit: `>=${GREEDY_MIN}`,
    ok: sameStream >= GREEDY_MIN && streamed.length === MAX_TOKENS,
  });

  // Requests of many lengths: solo first (the baseline), then all at once.
  const prompts = [
    exp.prompt,
    exp.prompt2,
    ...[1, 37, 64, 65, 130, 200].map((n, i) => syntheticPrompt(n, 100 + i, vocab)),
  ];
  const solo: number[][] = [];
  for (const p of prompts.slice(2)) solo.push((await complete(client, model, p)).tokens);
  const t0 = performance.now();
  const together = await Promise.all(prompts.map((p) => complete(client, model, p)));
  const ms = performance.now() - t0;
  const lens = prompts.map((p) => p.length).join(',');
  for (const [i, f] of fixture.entries()) {
    const same = samePrefix(together[i]!.tokens, f.greedy);
    rows.push({
      check: `${tag} HTTP concurrent ${f.name} greedy equal to transformers`,
      value: `${same}/${f.greedy.length}`,
      limit: `>=${GREEDY_MIN}`,
      ok: same >= GREEDY_MIN,
    });
  }
  let minSame = MAX_TOKENS;
  const notes: string[] = [];
  for (let i = 2; i < prompts.length; i++) {
    const got = together[i]!.tokens;
    const same = samePrefix(got, solo[i - 2]!);
    if (got.length !== MAX_TOKENS) notes.push(`len ${prompts[i]!.length}: ${got.length} tokens`);
    if (same < MAX_TOKENS) notes.push(`len ${prompts[i]!.length}: ${same} equal`);
    minSame = Math.min(minSame, same);
  }
  rows.push({
    check: `${tag} HTTP 8 concurrent (lens ${lens}) equal to solo (min)`,
    value: `${minSame}/${MAX_TOKENS}`,
    limit: `>=${GREEDY_MIN}`,
    ok: minSame >= GREEDY_MIN && notes.every((n) => !n.includes(' tokens')),
    note: `${ms.toFixed(0)} ms for all 8${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`,
  });

  dump.push({ name: 'streamed prompt 1', tokens: streamed });
  for (const [i, t] of solo.entries()) dump.push({ name: `solo len ${prompts[i + 2]!.length}`, tokens: t });
  for (const [i, c] of together.entries())
    dump.push({ name: `concurrent len ${prompts[i]!.length}`, tokens: c.tokens });
  if (process.env.OUT) {
    writeFileSync(join(process.env.OUT, `client-${label}.json`), JSON.stringify(rows, null, 1));
    writeFileSync(join(process.env.OUT, `completions-${label}.json`), JSON.stringify(dump));
  }
  printRows(`HTTP checks through the openai client (${label})`, rows);
  const failed = rows.filter((r) => !r.ok).length;
  console.log(`client ${label}: ${failed === 0 ? 'ALL OK' : `${failed} FAILED`} (${rows.length} checks)`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.log(`client failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  },
);
