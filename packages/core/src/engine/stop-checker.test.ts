import { expect, test } from 'vitest';
import { StopStringMatcher } from './stop-checker.js';

test('finds the earliest stop string in the window', () => {
  const m = new StopStringMatcher(['STOP', 'and']);
  expect(m.find('abc ST')).toBeUndefined();
  expect(m.find('abc STOP and')).toEqual({ at: 4, stop: 'STOP' });
});

test('holds back only a tail that could start a stop string', () => {
  const m = new StopStringMatcher(['STOP', '\n\n']);
  expect(m.holdback('abc')).toBe(0);
  expect(m.holdback('abc S')).toBe(1);
  expect(m.holdback('abc STO')).toBe(3);
  expect(m.holdback('abc\n')).toBe(1);
  expect(new StopStringMatcher([]).holdback('abc')).toBe(0);
});
