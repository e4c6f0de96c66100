import { expect, test } from 'vitest';
import { percentile, summarize } from './stats.js';

test('percentiles interpolate between closest ranks', () => {
  const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  expect(percentile(sorted, 50)).toBeCloseTo(5.5);
  expect(percentile(sorted, 90)).toBeCloseTo(9.1);
  expect(percentile(sorted, 99)).toBeCloseTo(9.91);
  expect(percentile([], 50)).toBe(0);
  expect(summarize([3, 1, 2])).toEqual({ mean: 2, p50: 2, p90: 2.8, p99: expect.closeTo(2.98) });
});
