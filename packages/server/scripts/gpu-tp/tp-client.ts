// The HTTP side of gpu-tp.sh, through the official openai client, against `flashserve serve` on the
// kv_lora_rank-512 fixture (--skip-tokenizer-init: prompts and outputs as token ids):
//   greedy <url> <fixtureDir>   prints {"greedy": [[...], [...]]}: the two prompts' 12-token greedy
//                               continuations (sent together, so they decode in one batch);
//   kill <url> <fixtureDir>     for a server whose rank 1 dies at its 4th forward: the request must fail
//                               with a 500 that names the dead rank; prints the error as JSON.
import OpenAI from 'openai';
import { loadExpected } from '../gpu-e2e/common.js';

const [mode, url, fixture] = process.argv.slice(2);
if (url === undefined || fixture === undefined || (mode !== 'greedy' && mode !== 'kill')) {
  console.error('usage: tp-client.mjs greedy|kill <url> <fixtureDir>');
  process.exit(2);
}
const exp = loadExpected(fixture);
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });

async function complete(prompt: number[]): Promise<number[]> {
  const model = (await client.models.list()).data[0]!.id;
  const body = {
    model,
    prompt,
    max_tokens: 12,
    temperature: 0,
    ignore_eos: true,
    return_token_ids: true,
  } as OpenAI.CompletionCreateParamsNonStreaming;
  const res = await client.completions.create(body);
  const choice = res.choices[0] as (typeof res.choices)[0] & { token_ids?: number[] };
  if (!choice.token_ids) throw new Error('response has no token_ids');
  return choice.token_ids;
}

async function main(): Promise<void> {
  if (mode === 'greedy') {
    const greedy = await Promise.all([exp.prompt, exp.prompt2].map(complete));
    console.log(JSON.stringify({ greedy }));
    return;
  }
  const err = await complete(exp.prompt).then(
    () => undefined,
    (e: unknown) => e,
  );
  const ok =
    err instanceof OpenAI.InternalServerError && /worker rank 1 (exited|failed)/.test((err as Error).message);
  console.log(
    JSON.stringify({
      kill: {
        ok,
        status: (err as { status?: number } | undefined)?.status,
        message: String((err as Error)?.message),
      },
    }),
  );
  process.exit(ok ? 0 : 1);
}

main().catch((e: unknown) => {
  console.error(`tp-client: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
