import { describe, expect, test } from 'vitest';
import type { Device } from '../device/device.js';
import { FlashserveError } from '../errors.js';
import type { AttentionBackend, BackendSelectionContext } from './backend.js';
import { AttentionBackendRegistry, attentionBackends } from './registry.js';

function fakeBackend(name: string, priority: number, reasons: (ctx: BackendSelectionContext) => string[]) {
  return {
    name,
    deviceKinds: ['cpu', 'cuda'],
    priority,
    unsupportedReasons: reasons,
  } as unknown as AttentionBackend;
}

const cpu = { info: { kind: 'cpu', name: 'cpu', computeDType: 'f32' } } as unknown as Device;
const ctx: BackendSelectionContext = {
  device: cpu,
  model: {
    numLayers: 1,
    numHeads: 16,
    kvLoraRank: 512,
    qkNopeHeadDim: 128,
    qkRopeHeadDim: 64,
    vHeadDim: 128,
  },
};
const needsCuda = (c: BackendSelectionContext) =>
  c.device.info.kind === 'cuda' ? [] : ['needs a CUDA device'];

function registry() {
  const r = new AttentionBackendRegistry();
  r.register('reference-mla', () => fakeBackend('reference-mla', 0, () => []));
  r.register('flashmla', () => fakeBackend('flashmla', 100, (c) => [...needsCuda(c), 'needs sm_90']));
  r.register('cuda-mla', () => fakeBackend('cuda-mla', 50, needsCuda));
  return r;
}

function errorOf(fn: () => unknown): FlashserveError {
  try {
    fn();
  } catch (e) {
    if (e instanceof FlashserveError) return e;
    throw e;
  }
  throw new Error('expected a FlashserveError');
}

describe('AttentionBackendRegistry', () => {
  test('auto picks the highest-priority backend that supports the configuration', () => {
    const r = registry();
    expect(r.resolve('auto', ctx).name).toBe('reference-mla');
    r.register('better-cpu', () => fakeBackend('better-cpu', 10, () => []));
    expect(r.resolve('auto', ctx).name).toBe('better-cpu');
  });

  test('an explicit name that cannot run fails with its reasons, never falling back', () => {
    const e = errorOf(() => registry().resolve('flashmla', ctx));
    expect(e.code).toBe('FS_ERR_BACKEND_UNSUPPORTED');
    expect(e.status).toBe(400);
    expect(e.message).toContain('flashmla: needs a CUDA device; needs sm_90');
    expect(e.message).not.toContain('reference-mla');
  });

  test('an unknown name lists the registered ones', () => {
    const e = errorOf(() => registry().resolve('flash', ctx));
    expect(e.code).toBe('FS_ERR_BACKEND_UNKNOWN');
    expect(e.message).toContain('cuda-mla, flashmla, reference-mla');
  });

  test('when nothing fits, the error lists every backend with its reasons', () => {
    const r = new AttentionBackendRegistry();
    r.register('flashmla', () => fakeBackend('flashmla', 100, (c) => [...needsCuda(c), 'needs sm_90']));
    r.register('cuda-mla', () => fakeBackend('cuda-mla', 50, needsCuda));
    const e = errorOf(() => r.resolve('auto', ctx));
    expect(e.code).toBe('FS_ERR_BACKEND_UNSUPPORTED');
    expect(e.message).toContain('  cuda-mla: needs a CUDA device');
    expect(e.message).toContain('  flashmla: needs a CUDA device; needs sm_90');
    expect(errorOf(() => new AttentionBackendRegistry().resolve('auto', ctx)).message).toContain(
      'no attention backend',
    );
  });

  test('factories run lazily, once', () => {
    const r = new AttentionBackendRegistry();
    let made = 0;
    r.register('x', () => {
      made++;
      return fakeBackend('x', 0, () => []);
    });
    expect(made).toBe(0);
    r.resolve('x', ctx);
    r.resolve('auto', ctx);
    expect(made).toBe(1);
  });

  test('a shared default registry exists for backends to register into', () => {
    expect(attentionBackends).toBeInstanceOf(AttentionBackendRegistry);
  });
});
