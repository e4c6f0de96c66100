import { describe, expect, it } from 'vitest';
import { cudaAvailability, requireAddon } from '../src/index.js';

describe('cuda availability', () => {
  it('imports cleanly and answers available or unavailable with a reason', () => {
    const a = cudaAvailability();
    if (a.available) {
      expect(a.devices.length).toBeGreaterThan(0);
      expect(a.devices[0]!.major).toBeGreaterThanOrEqual(7);
    } else {
      expect(a.reason).toMatch(/\w+/);
      expect(() => requireAddon()).toThrow(`@flashserve/cuda is unavailable: ${a.reason}`);
    }
  });

  it.runIf(process.env.FLASHSERVE_EXPECT_GPU !== '1')(
    'reports unavailable on a machine without a GPU',
    () => {
      const a = cudaAvailability();
      expect(a.available).toBe(false);
      if (!a.available) expect(a.reason).toMatch(/no CUDA|cudaGetDeviceCount|not built|failed to load/);
    },
  );
});
