// Benchmark prompts. Random prompts are token ids drawn from a seeded generator (exact input lengths
// and no tokenizer needed on the client); for the chat endpoint, which takes text, they are words of
// a small list that most BPE tokenizers keep as one token each. JSONL files give one prompt per line.

import { readFileSync } from 'node:fs';
import { SeededRandom } from '../embedded-model/random.js';
import { benchDataset } from '../errors.js';

export interface BenchPrompt {
  /** Token ids (completions) or text. */
  readonly prompt: number[] | string;
  /** Tokens asked for. */
  readonly outputLen: number;
  /** Prompt length as the client knows it (the server's usage is preferred when reported). */
  readonly inputLen: number;
}

// Ids below 1000 hold special and byte tokens in most vocabularies; 1000..30000 exist in every
// vocabulary this benchmark is likely to meet (32k and up).
const TOKEN_ID_MIN = 1000;
const TOKEN_ID_MAX = 30000;
const WORDS = [
  'time',
  'light',
  'river',
  'stone',
  'music',
  'green',
  'house',
  'paper',
  'cloud',
  'north',
  'table',
  'glass',
];

function spread(rng: SeededRandom, len: number, ratio: number): number {
  const lo = Math.max(1, Math.floor(len * (1 - ratio)));
  const hi = Math.max(lo, Math.ceil(len * (1 + ratio)));
  return lo + Math.floor(rng.next() * (hi - lo + 1));
}

export function randomPrompts(opts: {
  count: number;
  inputLen: number;
  outputLen: number;
  rangeRatio: number;
  seed: number;
  asText: boolean;
}): BenchPrompt[] {
  const rng = new SeededRandom(opts.seed);
  return Array.from({ length: opts.count }, () => {
    const inputLen = spread(rng, opts.inputLen, opts.rangeRatio);
    const outputLen = spread(rng, opts.outputLen, opts.rangeRatio);
    const prompt = opts.asText
      ? Array.from({ length: inputLen }, () => WORDS[Math.floor(rng.next() * WORDS.length)]).join(' ')
      : Array.from(
          { length: inputLen },
          () => TOKEN_ID_MIN + Math.floor(rng.next() * (TOKEN_ID_MAX - TOKEN_ID_MIN)),
        );
    return { prompt, outputLen, inputLen };
  });
}

/** Reads `{"prompt": string | number[], "output_len"?: number}` per line; cycles to `count`. */
export function jsonlPrompts(path: string, count: number, defaultOutputLen: number): BenchPrompt[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw benchDataset(path, (err as Error).message);
  }
  const rows: BenchPrompt[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw benchDataset(path, `line ${i + 1} is not JSON`);
    }
    const r = row as { prompt?: unknown; output_len?: unknown };
    const isIds = Array.isArray(r.prompt) && r.prompt.every((t) => Number.isInteger(t));
    if (typeof r.prompt !== 'string' && !isIds)
      throw benchDataset(path, `line ${i + 1}: "prompt" must be a string or token ids`);
    const outputLen = r.output_len === undefined ? defaultOutputLen : Number(r.output_len);
    if (!Number.isInteger(outputLen) || outputLen < 1)
      throw benchDataset(path, `line ${i + 1}: bad "output_len"`);
    const prompt = r.prompt as string | number[];
    rows.push({ prompt, outputLen, inputLen: typeof prompt === 'string' ? 0 : prompt.length });
  });
  if (rows.length === 0) throw benchDataset(path, 'no prompts');
  return Array.from({ length: count }, (_, i) => rows[i % rows.length] as BenchPrompt);
}
