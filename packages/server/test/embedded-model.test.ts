// The embedded model: deterministic from its seed, a config core's loader accepts, and exactly the
// tensors the DeepSeek model reads (checked against the models package's own manifest).

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadDeepseekConfig, loadHfTokenizer } from '@flashserve/core';
import { deepseekWeightManifest } from '@flashserve/models';
import { expect, inject, test } from 'vitest';
import { EMBEDDED_CONFIG } from '../src/embedded-model/config.js';
import { embeddedModelDir, generateEmbeddedWeights } from '../src/embedded-model/materialize.js';

const digest = (seed: number) => {
  const h = createHash('sha256');
  for (const t of generateEmbeddedWeights(seed)) h.update(t.name).update(new Uint8Array(t.data.buffer));
  return h.digest('hex');
};

test('weights depend only on the seed', () => {
  expect(digest(0)).toBe(digest(0));
  expect(digest(1)).not.toBe(digest(0));
});

test('the cached directory has the Hugging Face layout, loaded by core like any checkpoint', () => {
  const dir = embeddedModelDir(inject('cacheDir'));
  const config = loadDeepseekConfig(dir);
  expect(config.modelType).toBe('deepseek_v3');
  expect(config.vocabSize).toBe(129280);
  const tokenizer = loadHfTokenizer(dir);
  const chat = tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true });
  expect(chat).toBe('<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>');
  // add_bos_token: true in tokenizer_config.json, as transformers' LlamaTokenizerFast applies it: a
  // plain prompt gets BOS (id 0), a rendered chat (which writes BOS itself) is encoded without.
  expect(tokenizer.encode('Hello world')).toEqual([0, 19923, 2058]);
  expect(tokenizer.encode('Hello world', { addSpecialTokens: false })).toEqual([19923, 2058]);
  // Byte-level BPE: the engine's streaming detokenizer reads each token's bytes directly.
  const ids = tokenizer.encode('Größe 東京 🙂', { addSpecialTokens: false });
  expect(Buffer.concat(ids.map((id) => tokenizer.tokenBytes!(id)!)).toString('utf8')).toBe('Größe 東京 🙂');
  const header = readFileSync(join(dir, 'model.safetensors'));
  const names = Object.keys(
    JSON.parse(header.subarray(8, 8 + Number(header.readBigUInt64LE(0))).toString('utf8')),
  )
    .filter((n) => n !== '__metadata__')
    .sort();
  expect(names).toEqual([...deepseekWeightManifest(config).keys()].sort());
});

test('the model stays small enough to decode quickly on a CPU', () => {
  const params = generateEmbeddedWeights(0).reduce((a, t) => a + t.data.length, 0);
  expect(params).toBeLessThan(20_000_000);
  expect(EMBEDDED_CONFIG.vocab_size).toBe(129280);
});
