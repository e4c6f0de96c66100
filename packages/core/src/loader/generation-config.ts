// generation_config.json: the sampling defaults a checkpoint ships with. Absent file -> no defaults.
//
// Fields keep transformers' meaning: `doSample` false means greedy whatever the temperature says, so
// a caller turning these into request defaults should map doSample === false to temperature 0.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { JsonFields, readJsonObject } from './json-file.js';

export interface GenerationDefaults {
  readonly doSample?: boolean;
  readonly temperature?: number;
  readonly topP?: number;
  readonly topK?: number;
  readonly repetitionPenalty?: number;
  readonly maxNewTokens?: number;
  readonly bosTokenId?: number;
  /** Ids that end generation ([] when the file names none). */
  readonly eosTokenIds: readonly number[];
}

export function loadGenerationConfig(dir: string): GenerationDefaults {
  const file = join(dir, 'generation_config.json');
  if (!existsSync(file)) return { eosTokenIds: [] };
  const f = new JsonFields(readJsonObject(file, 'sampling defaults'), file);
  const out: {
    -readonly [K in keyof GenerationDefaults]: GenerationDefaults[K];
  } = { eosTokenIds: f.intList('eos_token_id') };
  if (f.has('do_sample')) out.doSample = f.bool('do_sample', false);
  if (f.has('temperature')) out.temperature = f.num('temperature');
  if (f.has('top_p')) out.topP = f.num('top_p');
  if (f.has('top_k')) out.topK = f.int('top_k');
  if (f.has('repetition_penalty')) out.repetitionPenalty = f.num('repetition_penalty');
  if (f.has('max_new_tokens')) out.maxNewTokens = f.int('max_new_tokens');
  if (f.has('bos_token_id')) out.bosTokenId = f.int('bos_token_id');
  return out;
}
