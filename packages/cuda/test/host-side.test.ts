// What can be tested without a GPU: storage reference counting, the dummy weight source, and that
// constructing the device without CUDA fails with the unavailability reason.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  CudaDevice,
  cudaAvailability,
  decodeGraphLadder,
  GpuDummyWeightSource,
  graphBatchFor,
  graphBatchSizes,
  isCudaContextLost,
  readSafetensorsHeader,
} from '../src/index.js';
import { CudaTensor, numelOf, Storage } from '../src/tensor.js';

describe('CudaTensor storage', () => {
  it('frees a block once, when the last tensor over it is released', () => {
    const freed: bigint[] = [];
    const s = new Storage(0x1000n, 64, (p) => freed.push(p));
    const t = new CudaTensor([4, 4], 'f32', s.ptr, s);
    const v = t.view([16]);
    expect(v.ptr).toBe(0x1000n);
    expect(v.bytes).toBe(64);
    t.release();
    expect(freed).toEqual([]);
    v.release();
    v.release();
    expect(freed).toEqual([0x1000n]);
    expect(t.released && v.released).toBe(true);
  });

  it('treats borrowed tensors (graph replays) as owning nothing', () => {
    const t = new CudaTensor([2], 'bf16', 0x2000n, undefined);
    expect(t.bytes).toBe(4);
    t.release();
    expect(t.released).toBe(true);
  });

  it('rejects invalid shapes', () => {
    expect(() => numelOf([2, -1])).toThrow('invalid tensor shape');
    expect(numelOf([])).toBe(1);
  });
});

describe('GpuDummyWeightSource', () => {
  const src = new GpuDummyWeightSource(
    new Map([
      ['a.weight', [4, 8]],
      ['a_layernorm.weight', [8]],
      ['gate.e_score_correction_bias', [4]],
    ]),
  );

  it('returns empty data for matrices (filled on the GPU) and real norms and biases', () => {
    expect(src.read('a.weight').data.length).toBe(0);
    expect(src.read('a.weight').shape).toEqual([4, 8]);
    expect([...src.read('a_layernorm.weight').data]).toEqual(new Array(8).fill(1));
    expect(src.read('gate.e_score_correction_bias').data.length).toBe(4);
    expect(src.names()).toHaveLength(3);
    expect(() => src.read('missing')).toThrow('no tensor named missing');
  });
});

describe.runIf(!cudaAvailability().available)('CudaDevice without CUDA', () => {
  it('fails to construct with the reason CUDA is unavailable', () => {
    expect(() => new CudaDevice()).toThrow('@flashserve/cuda is unavailable');
  });
});

describe('decode graph ladder', () => {
  it('is dense at small sizes and covers the maximum', () => {
    expect(graphBatchSizes(40)).toEqual([1, 2, 3, 4, 8, 16, 24, 32, 40]);
    expect(graphBatchSizes(256).at(-1)).toBe(256);
    expect(graphBatchSizes(100)).toEqual([1, 2, 3, 4, 8, 16, 24, 32, 40, 48, 56, 64, 96, 100]);
  });

  it('pads a batch to the next size, or says it does not fit', () => {
    const ladder = graphBatchSizes(64);
    expect(graphBatchFor(5, ladder)).toBe(8);
    expect(graphBatchFor(64, ladder)).toBe(64);
    expect(graphBatchFor(65, ladder)).toBeUndefined();
  });

  it('serving ladder: capped at 256 requests, trimmed to the graph staging memory', () => {
    expect(decodeGraphLadder(64, 16)).toEqual(graphBatchSizes(64));
    expect(decodeGraphLadder(1024, 16).at(-1)).toBe(256);
    // V2-Lite at its full 163840 positions: 2560-block tables still fit every size up to 256.
    expect(decodeGraphLadder(256, 2560)).toEqual(graphBatchSizes(256));
    // Very wide tables drop the largest sizes first, never the small ones.
    const wide = decodeGraphLadder(256, 40000);
    expect(wide.length).toBeGreaterThan(4);
    expect(wide.length).toBeLessThan(graphBatchSizes(256).length);
    expect(wide).toEqual(graphBatchSizes(256).slice(0, wide.length));
  });

  it('recognises lost-context CUDA errors', () => {
    expect(isCudaContextLost(Object.assign(new Error('x'), { cudaError: 700 }))).toBe(true);
    expect(isCudaContextLost(Object.assign(new Error('x'), { cudaError: 2 }))).toBe(false);
    expect(isCudaContextLost(new Error('plain'))).toBe(false);
  });
});

describe('readSafetensorsHeader', () => {
  it("lists a checkpoint's tensors with absolute data offsets", () => {
    const file = fileURLToPath(
      new URL('../../models/test/fixtures/gpu-shaped-576-bf16/model.safetensors', import.meta.url),
    );
    const entries = readSafetensorsHeader(file);
    expect(entries.length).toBeGreaterThan(10);
    const embed = entries.find((e) => e.name === 'model.embed_tokens.weight');
    expect(embed?.shape).toEqual([512, 256]);
    expect(embed?.dtype).toBe('bf16');
    expect(embed?.bytes).toBe(512 * 256 * 2);
    expect(entries.every((e) => e.offset >= 8)).toBe(true);
  });
});
