// On every machine (CI has no GPU): the package imports, registers its backends, reports whether the
// kernels can run and why not, and the backends refuse configurations they cannot run with reasons.
import {
  AttentionBackendRegistry,
  attentionBackends,
  type BackendSelectionContext,
  CpuDevice,
  type Device,
  type MlaModelSpec,
} from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import {
  CudaMlaBackend,
  FlashMlaBackend,
  mlaAvailability,
  registerMlaBackends,
  requireMlaAddon,
} from '../src/index.js';

const deepseek: MlaModelSpec = {
  numLayers: 2,
  numHeads: 16,
  kvLoraRank: 512,
  qkNopeHeadDim: 128,
  qkRopeHeadDim: 64,
  vHeadDim: 128,
};

/** A device that claims to be a CUDA GPU of the given compute capability (only `info` is read). */
function fakeCuda(cc: number): Device {
  return {
    info: { kind: 'cuda', name: `fake (sm_${cc})`, computeCapability: cc, computeDType: 'bf16' },
  } as Device;
}

describe('mla-backend availability', () => {
  it('imports cleanly and answers available or unavailable with a reason', () => {
    const a = mlaAvailability();
    if (a.available) expect(a.devices.length).toBeGreaterThan(0);
    else {
      expect(a.reason).toMatch(/\w+/);
      expect(() => requireMlaAddon()).toThrow(`@flashserve/mla-backend is unavailable: ${a.reason}`);
    }
  });

  it.runIf(process.env.FLASHSERVE_EXPECT_GPU !== '1')(
    'reports unavailable on a machine without a GPU',
    () => {
      const a = mlaAvailability();
      expect(a.available).toBe(false);
      if (!a.available) expect(a.reason).toMatch(/no CUDA|cudaGetDeviceCount|not built|failed to load/);
    },
  );

  it('registers flashmla and cuda-mla into the process-wide registry on import', () => {
    expect(attentionBackends.names()).toEqual(
      expect.arrayContaining(['flashmla', 'cuda-mla', 'reference-mla']),
    );
    expect(attentionBackends.get('flashmla').priority).toBeGreaterThan(
      attentionBackends.get('cuda-mla').priority,
    );
  });
});

describe('backend refusals', () => {
  const cpu: BackendSelectionContext = { device: new CpuDevice(), model: deepseek };

  it('refuses the CPU device, saying why', () => {
    for (const backend of [new FlashMlaBackend(), new CudaMlaBackend()]) {
      const reasons = backend.unsupportedReasons(cpu);
      expect(reasons.join('\n')).toContain(`${backend.name} needs a CUDA device (device is cpu (float32))`);
      if (!mlaAvailability().available) expect(reasons.join('\n')).toContain('the MLA addon is unavailable');
    }
  });

  it('flashmla needs Hopper; cuda-mla takes sm_80 and newer', () => {
    const flash = new FlashMlaBackend();
    const portable = new CudaMlaBackend();
    const on = (cc: number): BackendSelectionContext => ({ device: fakeCuda(cc), model: deepseek });
    expect(flash.unsupportedReasons(on(80)).join()).toContain('flashmla needs sm_90 (device is sm_80)');
    expect(flash.unsupportedReasons(on(100)).join()).toContain('flashmla needs sm_90 (device is sm_100)');
    expect(portable.unsupportedReasons(on(75)).join()).toContain(
      'cuda-mla needs sm_80 or newer (device is sm_75)',
    );
    expect(portable.unsupportedReasons(on(90)).join()).not.toContain('needs sm_');
  });

  it('refuses other latent sizes and block sizes', () => {
    const ctx: BackendSelectionContext = {
      device: fakeCuda(90),
      model: { ...deepseek, kvLoraRank: 256, qkRopeHeadDim: 32 },
      blockSize: 16,
    };
    const text = new FlashMlaBackend().unsupportedReasons(ctx).join('\n');
    expect(text).toContain('needs kv_lora_rank 512 (model has 256)');
    expect(text).toContain('needs qk_rope_head_dim 64 (model has 32)');
    expect(text).toContain('needs KV block size 64 (asked for 16)');
  });

  it('asks for a 64-token bf16 cache of 576-wide rows', () => {
    const layout = new FlashMlaBackend().cacheLayout({ device: fakeCuda(90), model: deepseek });
    expect(layout).toEqual({
      blockSize: 64,
      entryWidth: 576,
      dtype: 'bf16',
      bytesPerBlock: 64 * 576 * 2 * 2,
    });
  });

  it('an explicit choice fails with the reasons; auto falls to the CPU reference on a CPU device', () => {
    const registry = new AttentionBackendRegistry();
    registerMlaBackends(registry);
    expect(() => registry.resolve('flashmla', cpu)).toThrow(/flashmla: flashmla needs a CUDA device/);
    expect(attentionBackends.resolve('auto', cpu).name).toBe('reference-mla');
  });
});
