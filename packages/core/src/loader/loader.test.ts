// Loader behaviour on hand-made files: safetensors round trips in every dtype, sharded indexes, and an
// error naming the file for each way a model directory can be broken.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuDevice } from '../device/cpu-device.js';
import { f32ToBf16 } from '../device/cpu-kernels.js';
import { loadGenerationConfig } from './generation-config.js';
import { loadDeepseekConfig, parseDeepseekConfig } from './model-config.js';
import { SafetensorsCheckpoint, SafetensorsFile } from './safetensors.js';

interface Spec {
  readonly dtype: 'F32' | 'BF16' | 'F16';
  readonly shape: number[];
  readonly bytes: Uint8Array;
}

function safetensorsBytes(tensors: Record<string, Spec>): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...Object.values(tensors).map((t) => Buffer.from(t.bytes))]);
}

function bytesOf(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'fs-loader-'));
}

const values = Float32Array.from([1, -2.5, 0.15625, 3e-3, 65504, -0]);

describe('safetensors', () => {
  it('reads F32, BF16 and F16 tensors at their offsets and widens them exactly', () => {
    const dir = tmp();
    // 1, -2.5, 0.15625 in half precision: 0x3c00, 0xc100, 0x3100.
    const half = Uint16Array.from([0x3c00, 0xc100, 0x3100, 0x0001, 0x7bff, 0x8000]);
    writeFileSync(
      join(dir, 'model.safetensors'),
      safetensorsBytes({
        a: { dtype: 'F32', shape: [2, 3], bytes: bytesOf(values) },
        b: { dtype: 'BF16', shape: [6], bytes: bytesOf(f32ToBf16(values)) },
        c: { dtype: 'F16', shape: [3, 2], bytes: bytesOf(half) },
      }),
    );
    const ckpt = new SafetensorsCheckpoint(dir);
    const dev = new CpuDevice();
    const widen = (n: string) => {
      const t = ckpt.read(n);
      return Array.from(dev.toHost(dev.upload(t.data, t.shape, t.dtype)));
    };
    expect(widen('a')).toEqual(Array.from(values));
    expect(widen('b').slice(0, 3)).toEqual([1, -2.5, 0.15625]);
    expect(widen('c')).toEqual([1, -2.5, 0.15625, 2 ** -24, 65504, -0]);
    expect(ckpt.info('c')).toEqual({ dtype: 'F16', shape: [3, 2] });
    ckpt.close();
  });

  it('follows model.safetensors.index.json across shards', () => {
    const dir = tmp();
    writeFileSync(
      join(dir, 's1.safetensors'),
      safetensorsBytes({ x: { dtype: 'F32', shape: [2], bytes: bytesOf(values.slice(0, 2)) } }),
    );
    writeFileSync(
      join(dir, 's2.safetensors'),
      safetensorsBytes({ y: { dtype: 'F32', shape: [1], bytes: bytesOf(values.slice(2, 3)) } }),
    );
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { x: 's1.safetensors', y: 's2.safetensors' } }),
    );
    const ckpt = new SafetensorsCheckpoint(dir);
    expect(ckpt.names().sort()).toEqual(['x', 'y']);
    expect(Array.from(ckpt.read('y').data)).toEqual([0.15625]);
    ckpt.close();
  });

  it('names the file and the problem when something is wrong', () => {
    const dir = tmp();
    expect(() => new SafetensorsCheckpoint(dir)).toThrow(
      expect.objectContaining({ code: 'FS_ERR_LOAD_FILE_MISSING' }),
    );

    writeFileSync(join(dir, 'short.safetensors'), Buffer.from([1, 2, 3]));
    expect(() => new SafetensorsFile(join(dir, 'short.safetensors'))).toThrow(
      /short\.safetensors is malformed/,
    );

    const good = safetensorsBytes({ a: { dtype: 'F32', shape: [2, 3], bytes: bytesOf(values) } });
    writeFileSync(join(dir, 'cut.safetensors'), good.subarray(0, good.length - 4));
    expect(() => new SafetensorsFile(join(dir, 'cut.safetensors'))).toThrow(
      /cut\.safetensors is malformed: tensor "a": data_offsets/,
    );

    const wrongShape = safetensorsBytes({ a: { dtype: 'F32', shape: [7], bytes: bytesOf(values) } });
    writeFileSync(join(dir, 'shape.safetensors'), wrongShape);
    expect(() => new SafetensorsFile(join(dir, 'shape.safetensors'))).toThrow(/24 bytes for F32 shape \[7\]/);

    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { a: 'gone.safetensors' } }),
    );
    expect(() => new SafetensorsCheckpoint(dir)).toThrow(/gone\.safetensors is missing/);
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{not json');
    expect(() => new SafetensorsCheckpoint(dir)).toThrow(
      /model\.safetensors\.index\.json is malformed: invalid JSON/,
    );
  });
});

const baseConfig = {
  model_type: 'deepseek_v3',
  vocab_size: 100,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  q_lora_rank: null,
  kv_lora_rank: 16,
  qk_nope_head_dim: 8,
  qk_rope_head_dim: 8,
  v_head_dim: 8,
  n_routed_experts: 4,
  num_experts_per_tok: 2,
  n_group: 2,
  topk_group: 1,
  first_k_dense_replace: 1,
  max_position_embeddings: 4096,
};

describe('config.json', () => {
  it('accepts both RoPE spellings', () => {
    const hub = parseDeepseekConfig(
      {
        ...baseConfig,
        rope_theta: 10000,
        rope_scaling: {
          type: 'yarn',
          factor: 40,
          mscale: 1,
          mscale_all_dim: 1,
          original_max_position_embeddings: 4096,
          beta_fast: 32,
          beta_slow: 1,
        },
      },
      'hub.json',
    );
    const v5 = parseDeepseekConfig(
      {
        ...baseConfig,
        rope_parameters: {
          rope_type: 'yarn',
          rope_theta: 10000,
          factor: 40,
          mscale: 1,
          mscale_all_dim: 1,
          original_max_position_embeddings: 4096,
          beta_fast: 32,
          beta_slow: 1,
        },
      },
      'v5.json',
    );
    expect(v5).toEqual(hub);
    expect(hub.rope.yarn?.factor).toBe(40);
    expect(hub.qLoraRank).toBeNull();
    expect(hub.moe?.normTopkProb).toBe(true);
  });

  it('names the file and the problem', () => {
    const dir = tmp();
    expect(() => loadDeepseekConfig(dir)).toThrow(
      expect.objectContaining({ code: 'FS_ERR_LOAD_FILE_MISSING' }),
    );
    writeFileSync(join(dir, 'config.json'), '{"model_type": ');
    expect(() => loadDeepseekConfig(dir)).toThrow(/config\.json is malformed: invalid JSON/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...baseConfig, model_type: 'llama' }));
    expect(() => loadDeepseekConfig(dir)).toThrow(
      expect.objectContaining({ code: 'FS_ERR_LOAD_CONFIG_UNSUPPORTED' }),
    );
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...baseConfig, hidden_size: '32' }));
    expect(() => loadDeepseekConfig(dir)).toThrow(/"hidden_size" must be an integer, got "32"/);
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ ...baseConfig, rope_scaling: { type: 'longrope', factor: 2 } }),
    );
    expect(() => loadDeepseekConfig(dir)).toThrow(/RoPE type "longrope"/);
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ ...baseConfig, quantization_config: { quant_method: 'fp8' } }),
    );
    expect(() => loadDeepseekConfig(dir)).toThrow(/quantized checkpoint \(quant_method "fp8"\)/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...baseConfig, n_group: 3 }));
    expect(() => loadDeepseekConfig(dir)).toThrow(/not a multiple of n_group 3/);
  });

  it('reads generation_config.json, and no file means no defaults', () => {
    const dir = tmp();
    expect(loadGenerationConfig(dir)).toEqual({ eosTokenIds: [] });
    writeFileSync(
      join(dir, 'generation_config.json'),
      JSON.stringify({ eos_token_id: [1, 7], temperature: 0.3, top_k: 20 }),
    );
    expect(loadGenerationConfig(dir)).toEqual({ eosTokenIds: [1, 7], temperature: 0.3, topK: 20 });
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ temperature: 'hot' }));
    expect(() => loadGenerationConfig(dir)).toThrow(
      /generation_config\.json is malformed: "temperature" must be a number/,
    );
  });
});
