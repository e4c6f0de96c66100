// Checks of a device's optional ops (Device.addRmsNormLinear, Device.moeRouteExperts) through the
// whole model: a CpuDevice given the op as the composition it is defined as must give the logits and
// tokens of a plain CpuDevice, and the model must call it where expected.

import { CpuDevice, type Device, referenceMlaBackend } from '@flashserve/core';
import { expect } from 'vitest';
import { type DeepseekModel, loadDeepseekModel } from '../../src/index.js';
import { expected, fixtureDir } from './fixtures.js';
import { runGreedy } from './paged-runner.js';

/** A CpuDevice that also has the `extra` ops; `reads[name]` counts how often the model looked up each
 * method named in `counted`. */
export function cpuWith(
  extra: (cpu: CpuDevice) => Partial<Device>,
  counted: readonly string[] = [],
): { device: Device; reads: Record<string, number> } {
  const cpu = new CpuDevice();
  const ops = extra(cpu) as Record<string | symbol, unknown>;
  const reads: Record<string, number> = Object.fromEntries(counted.map((k) => [k, 0]));
  const device = new Proxy(cpu, {
    get(target, prop) {
      if (typeof prop === 'string' && prop in reads) reads[prop]!++;
      if (prop in ops) return ops[prop];
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Device;
  return { device, reads };
}

/** Greedy runs of fixture `name` on a plain CpuDevice and on `device` (paged, chunked prefill):
 * prompt logits and generated tokens equal bit for bit. Returns the plain model (for its config). */
export function expectSameAsPlainCpu(name: string, device: Device): DeepseekModel {
  const exp = expected(name);
  const opts = { blockSize: 16, chunk: 8, steps: 4 };
  const plain = loadDeepseekModel(fixtureDir(name), {
    device: new CpuDevice(),
    backend: referenceMlaBackend(),
  });
  const other = loadDeepseekModel(fixtureDir(name), { device, backend: referenceMlaBackend() });
  const want = runGreedy(plain, [exp.prompt, exp.prompt2], opts);
  const got = runGreedy(other, [exp.prompt, exp.prompt2], opts);
  for (let s = 0; s < want.length; s++) {
    expect(got[s]!.promptLogits).toEqual(want[s]!.promptLogits);
    expect(got[s]!.generated).toEqual(want[s]!.generated);
  }
  return plain;
}
