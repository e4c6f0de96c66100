// The done-when of issue 5: for every transformers fixture, last-position logits within 1e-4 and the
// 12-token greedy continuation identical, through the paged cache (chunked prefill + decode, two
// sequences batched) at block sizes 64 and 16.

import { CpuDevice, referenceMlaBackend } from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { loadDeepseekModel } from '../src/index.js';
import { expected, fixtureDir, fixtureNames } from './support/fixtures.js';
import { maxAbsDiff, runGreedy } from './support/paged-runner.js';

const TOLERANCE = 1e-4;

describe.each(fixtureNames())('fixture %s', (name) => {
  const exp = expected(name);
  const model = loadDeepseekModel(fixtureDir(name), {
    device: new CpuDevice(),
    backend: referenceMlaBackend(),
  });

  it.each([
    { blockSize: 64, chunk: 1 << 30 },
    { blockSize: 16, chunk: 8 },
  ])(
    'matches transformers through the paged cache (block size $blockSize, prefill chunk $chunk)',
    ({ blockSize, chunk }) => {
      const [a, b] = runGreedy(model, [exp.prompt, exp.prompt2], {
        blockSize,
        chunk,
        steps: exp.greedy.length,
      });
      const errA = maxAbsDiff(a!.promptLogits, exp.logits);
      const errB = maxAbsDiff(b!.promptLogits, exp.logits2);
      expect(errA, `prompt 1 logits max abs error ${errA}`).toBeLessThan(TOLERANCE);
      expect(errB, `prompt 2 logits max abs error ${errB}`).toBeLessThan(TOLERANCE);
      expect(a!.generated).toEqual(exp.greedy);
      expect(b!.generated).toEqual(exp.greedy2);
    },
  );
});
