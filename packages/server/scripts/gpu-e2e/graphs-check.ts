// gpu-e2e.sh's graphs mode (GPU_E2E_GRAPHS=1): CUDA graphs for decode steps vs eager, through the
// real server.
//   node graphs-check.mjs compare <graphsLabel> <eagerLabel>
//     compares what client.mjs got from a server with graphs and from one with --enforce-eager
//     ($OUT/completions-<label>.json): every completion's tokens (greedy) must be equal, and the
//     top-20 logprobs at every generated position of the fixture prompts (all but the first come
//     from decode steps) within bf16 noise; writes $OUT/graphs-<graphsLabel>.json (check rows).
//   node graphs-check.mjs bench <baseUrl> <label> <batch,...> [maxTokens]
//     decode tokens/s at each batch size: B concurrent greedy requests (16-token prompts,
//     ignore_eos); after a warm-up round (graphs captured), the time of B requests of maxTokens + 1
//     tokens minus the time of B requests of 1 token (prefill and first token), so only the
//     maxTokens decode steps are counted: tok/s = B * maxTokens / difference. Writes
//     $OUT/tput-<label>.json.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, printRows, type Row } from './common.js';

/** Largest |logprob difference| graphs vs eager accepted as bf16 noise (a bf16 ulp at logit 8 is 0.03). */
const LOGPROB_NOISE = 0.05;

interface Dumped {
  readonly name: string;
  readonly tokens: number[];
  readonly top?: Record<string, number>[];
}

function compare(out: string, graphs: string, eager: string): number {
  const read = (l: string) =>
    JSON.parse(readFileSync(join(out, `completions-${l}.json`), 'utf8')) as Dumped[];
  const g = read(graphs);
  const e = read(eager);
  let equal = 0;
  const diffs: string[] = [];
  let worst = 0;
  let positions = 0;
  for (const [i, ge] of g.entries()) {
    const ee = e[i];
    if (ee === undefined || ee.name !== ge.name) throw new Error(`completion ${i} differs in name`);
    if (ge.tokens.join() === ee.tokens.join()) equal++;
    else diffs.push(ge.name);
    if (ge.top === undefined || ee.top === undefined) continue;
    // Positions up to the first differing token (after it the contexts differ).
    let p = 0;
    while (p < ge.top.length && p < ee.top.length) {
      for (const [id, lp] of Object.entries(ge.top[p]!)) {
        const ref = ee.top[p]![id];
        if (ref !== undefined) worst = Math.max(worst, Math.abs(lp - ref));
      }
      positions++;
      if (ge.tokens[p] !== ee.tokens[p]) break;
      p++;
    }
  }
  const rows: Row[] = [
    {
      check: `[${graphs}] greedy completions equal to --enforce-eager (${eager})`,
      value: `${equal}/${g.length}`,
      limit: `${g.length}`,
      ok: equal === g.length,
      ...(diffs.length > 0 ? { note: `differ: ${diffs.join('; ')}` } : {}),
    },
    {
      check: `[${graphs}] top-20 logprobs vs eager, ${positions} positions (max abs)`,
      value: fmt(worst),
      limit: fmt(LOGPROB_NOISE),
      ok: positions > 0 && worst <= LOGPROB_NOISE,
    },
  ];
  writeFileSync(join(out, `graphs-${graphs}.json`), JSON.stringify(rows, null, 1));
  printRows(`CUDA graphs vs eager (${graphs} vs ${eager})`, rows);
  return rows.every((r) => r.ok) ? 0 : 1;
}

function prompt16(seed: number): number[] {
  let s = seed * 7919 + 17;
  return Array.from({ length: 16 }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 1 + (s % 500); // within every vocabulary here (the fixture has 512)
  });
}

async function bench(out: string, baseUrl: string, label: string, batches: number[], maxTokens: number) {
  const models = (await (await fetch(`${baseUrl}/models`)).json()) as { data: { id: string }[] };
  const model = models.data[0]!.id;
  let seed = 0;
  const round = async (B: number, tokens: number): Promise<number> => {
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: B }, async () => {
        const res = await fetch(`${baseUrl}/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model,
            prompt: prompt16(++seed),
            max_tokens: tokens,
            temperature: 0,
            ignore_eos: true,
          }),
        });
        const body = (await res.json()) as { usage?: { completion_tokens: number } };
        if (!res.ok || body.usage?.completion_tokens !== tokens)
          throw new Error(`request failed (${res.status}): ${JSON.stringify(body).slice(0, 300)}`);
      }),
    );
    return performance.now() - t0;
  };
  const results: { batch: number; ms_per_step: number; tok_s: number }[] = [];
  for (const B of batches) {
    await round(B, maxTokens + 1); // warm-up: graphs of the sizes this batch visits are captured
    const t1 = Math.min(await round(B, 1), await round(B, 1));
    const tN = await round(B, maxTokens + 1);
    const decodeMs = Math.max(tN - t1, 1e-3);
    const r = {
      batch: B,
      ms_per_step: +(decodeMs / maxTokens).toFixed(3),
      tok_s: Math.round((B * maxTokens * 1000) / decodeMs),
    };
    console.log(`[${label}] batch ${B}: ${r.ms_per_step} ms/decode step, ${r.tok_s} tok/s`);
    results.push(r);
  }
  writeFileSync(join(out, `tput-${label}.json`), JSON.stringify(results));
}

async function main(): Promise<number> {
  const out = process.env.OUT ?? '.';
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'compare' && args.length === 2) return compare(out, args[0]!, args[1]!);
  if (mode === 'bench' && args.length >= 3) {
    await bench(out, args[0]!, args[1]!, args[2]!.split(',').map(Number), Number(args[3] ?? 64));
    return 0;
  }
  console.log(
    'usage: graphs-check.mjs compare <graphs> <eager> | bench <baseUrl> <label> <b,...> [maxTokens]',
  );
  return 2;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.log(`graphs-check failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  },
);
