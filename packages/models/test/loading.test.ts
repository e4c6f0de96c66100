// Loading the fixtures: both config spellings normalise alike, RoPE tables and the softmax scale equal
// what transformers computed, every safetensors dtype/sharding loads, and the tokenizer, chat template
// and generation_config.json match transformers' own outputs.

import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CpuDevice,
  loadDeepseekConfig,
  loadGenerationConfig,
  loadHfTokenizer,
  parseDeepseekConfig,
  readJsonObject,
  SafetensorsCheckpoint,
} from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { deepseekWeightManifest, ropeFrequencies, softmaxScale } from '../src/index.js';
import { expected, fixtureDir, fixtureNames } from './support/fixtures.js';

describe.each(fixtureNames())('fixture %s config and weights', (name) => {
  const dir = fixtureDir(name);
  const exp = expected(name);
  const config = loadDeepseekConfig(dir);

  it('loads the Hub spelling and the rope_parameters spelling to the same config', () => {
    const altFile = join(dir, 'config.alt.json');
    const alt = parseDeepseekConfig(readJsonObject(altFile, 'test'), altFile);
    expect(alt).toEqual(config);
    const raw = readJsonObject(join(dir, 'config.json'), 'test');
    const altRaw = readJsonObject(altFile, 'test');
    // One of the two files is in each spelling.
    const spellings = [raw, altRaw].map((r) => ('rope_parameters' in r ? 'rope_parameters' : 'hub')).sort();
    expect(spellings).toEqual(['hub', 'rope_parameters']);
  });

  it('computes the RoPE frequencies, attention factor and softmax scale transformers did', () => {
    const { invFreq, attentionFactor } = ropeFrequencies(config);
    expect(invFreq.length).toBe(exp.rope_inv_freq.length);
    for (const [i, v] of exp.rope_inv_freq.entries()) expect(invFreq[i]).toBeCloseTo(v, 9);
    expect(attentionFactor).toBeCloseTo(exp.rope_attention_scaling, 12);
    expect(softmaxScale(config)).toBeCloseTo(exp.attn_scaling, 12);
  });

  it('finds every tensor the config implies, with the saved shapes and dtype', () => {
    const ckpt = new SafetensorsCheckpoint(dir);
    try {
      const manifest = deepseekWeightManifest(config);
      for (const [n, shape] of manifest) {
        expect(ckpt.has(n), n).toBe(true);
        expect(ckpt.info(n).shape).toEqual(shape);
        expect(exp.tensors[n]?.[1]).toEqual(shape);
      }
      const want = { f32: 'F32', bf16: 'BF16', f16: 'F16' }[exp.dtype];
      expect(ckpt.info('model.embed_tokens.weight').dtype).toBe(want);
      // bf16/f16 widen exactly: a round trip through the CPU device keeps every value.
      const t = ckpt.read('model.norm.weight');
      const dev = new CpuDevice();
      const host = dev.toHost(dev.upload(t.data, t.shape, t.dtype));
      expect(host.length).toBe(config.hiddenSize);
      expect(Number.isFinite(host[0])).toBe(true);
    } finally {
      ckpt.close();
    }
  });
});

describe('config details', () => {
  it('reads V2 without q_lora_rank as null and V3 with rope_interleave false', () => {
    expect(loadDeepseekConfig(fixtureDir('v2-nolora-greedy')).qLoraRank).toBeNull();
    const v3 = loadDeepseekConfig(fixtureDir('v3-nolora-half-tied-f16'));
    expect(v3.ropeInterleave).toBe(false);
    expect(v3.tieWordEmbeddings).toBe(true);
    expect(v3.rmsNormEps).toBe(1e-5);
  });

  it('reads a sharded checkpoint through its index', () => {
    const ckpt = new SafetensorsCheckpoint(fixtureDir('v3-moe-group-yarn-sharded'));
    try {
      expect(ckpt.description).toMatch(/4 safetensors files/);
      expect(ckpt.names().length).toBe(Object.keys(expected('v3-moe-group-yarn-sharded').tensors).length);
    } finally {
      ckpt.close();
    }
  });

  it('reads the GPU-shaped fixture as the real DeepSeek latent layout (512 + 64)', () => {
    const c = loadDeepseekConfig(fixtureDir('gpu-shaped-576-bf16'));
    expect(c.kvLoraRank + c.qkRopeHeadDim).toBe(576);
  });
});

describe('tokenizer, chat template and generation config', () => {
  const dir = fixtureDir('v3-dense-yarn-tok');
  const tok = expected('v3-dense-yarn-tok').tokenizer!;
  const generation = loadGenerationConfig(dir);
  const tokenizer = loadHfTokenizer(dir, { extraEosTokenIds: generation.eosTokenIds });

  it('encodes like transformers, with and without special tokens', () => {
    for (const [text, ids] of Object.entries(tok.encode)) expect(tokenizer.encode(text), text).toEqual(ids);
    for (const [text, ids] of Object.entries(tok.encode_no_special)) {
      expect(tokenizer.encode(text, { addSpecialTokens: false }), text).toEqual(ids);
    }
  });

  it('decodes every id like transformers, incomplete UTF-8 as U+FFFD', () => {
    for (const [id, text] of tok.decode_each.entries()) expect(tokenizer.decode([id]), `id ${id}`).toBe(text);
    expect(tok.decode_each.some((t) => t.includes('\uFFFD'))).toBe(true);
    const ids = tokenizer.encode('Größe 東京 🙂', { addSpecialTokens: false });
    expect(tokenizer.decode(ids)).toBe('Größe 東京 🙂');
  });

  it('gives per-token bytes that concatenate to the text, and none for special tokens', () => {
    const tokenBytes = tokenizer.tokenBytes!;
    expect(tokenBytes).toBeDefined();
    for (const text of ['Größe 東京 🙂', 'Hello, world!', '  spaced\ttabs\nnewline']) {
      const ids = tokenizer.encode(text, { addSpecialTokens: false });
      const bytes = Buffer.concat(ids.map((id) => tokenBytes(id)!));
      expect(bytes.toString('utf8'), text).toBe(tokenizer.decode(ids));
    }
    expect(tokenBytes(0)).toBeUndefined();
  });

  it('renders the chat template like transformers', () => {
    expect(tokenizer.applyChatTemplate(tok.chat_messages, { addGenerationPrompt: true })).toBe(
      tok.chat_rendered,
    );
  });

  it('knows its special and end-of-sequence tokens and vocabulary size', () => {
    expect(tokenizer.vocabSize).toBe(tok.vocab_size);
    expect(tokenizer.eosTokenIds).toContain(1);
    expect(tokenizer.specialTokenIds.has(0)).toBe(true);
    expect(tokenizer.decode(tokenizer.encode('Hello'), { skipSpecialTokens: true })).toBe('Hello');
  });

  it('reads generation_config.json defaults', () => {
    expect(generation).toMatchObject({ doSample: true, temperature: 0.6, topP: 0.95, bosTokenId: 0 });
    expect(generation.eosTokenIds).toEqual([1]);
  });

  it('refuses a chat request when the model has no template', () => {
    const bare = mkdtempSync(join(tmpdir(), 'fs-tok-'));
    copyFileSync(join(dir, 'tokenizer.json'), join(bare, 'tokenizer.json'));
    const noTemplate = loadHfTokenizer(bare);
    expect(noTemplate.hasChatTemplate).toBe(false);
    expect(() => noTemplate.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(
      expect.objectContaining({ code: 'FS_ERR_CHAT_TEMPLATE_MISSING' }),
    );
    expect(noTemplate.encode('Hello, world!', { addSpecialTokens: false })).toEqual(
      tok.encode_no_special['Hello, world!'],
    );
  });
});
