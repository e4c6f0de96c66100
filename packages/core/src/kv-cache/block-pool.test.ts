import { describe, expect, test } from 'vitest';
import { BlockPool, NULL_BLOCK } from './block-pool.js';

describe('BlockPool', () => {
  test('hands out every block but the null block, then refuses', () => {
    const pool = new BlockPool(5);
    expect(pool.numFreeBlocks).toBe(4);
    const got = [pool.allocate(), pool.allocate(), pool.allocate(), pool.allocate()];
    expect(got.sort()).toEqual([1, 2, 3, 4]);
    expect(got).not.toContain(NULL_BLOCK);
    expect(pool.usage).toBe(1);
    expect(() => pool.allocate()).toThrow(/no free block/);
  });

  test('reference counts: a shared block is free only when the last holder releases it', () => {
    const pool = new BlockPool(3);
    const b = pool.allocate();
    pool.touch(b);
    expect(pool.refCount(b)).toBe(2);
    pool.release(b);
    expect(pool.freeBlockIds()).not.toContain(b);
    pool.release(b);
    expect(pool.freeBlockIds()).toContain(b);
    expect(() => pool.release(b)).toThrow(/not in use/);
  });

  test('uncached blocks are reused before any cached block is evicted; cached ones leave in LRU order', () => {
    const pool = new BlockPool(5);
    const [a, b, c, d] = [pool.allocate(), pool.allocate(), pool.allocate(), pool.allocate()];
    pool.cache(a, 'ha');
    pool.cache(b, 'hb');
    pool.release(a); // cached, freed first -> evicted first among cached
    pool.release(c); // uncached
    pool.release(b); // cached
    pool.release(d); // uncached
    expect(pool.freeBlockIds()).toEqual([d, c, a, b]);
    expect(pool.allocate()).toBe(d);
    expect(pool.allocate()).toBe(c);
    expect(pool.lookup('ha')).toBe(a);
    expect(pool.allocate()).toBe(a);
    // Eviction forgets the hash.
    expect(pool.lookup('ha')).toBeUndefined();
    expect(pool.hashOf(a)).toBeUndefined();
    expect(pool.lookup('hb')).toBe(b);
  });

  test('touching a free cached block takes it out of the free queue', () => {
    const pool = new BlockPool(4);
    const a = pool.allocate();
    pool.cache(a, 'h');
    pool.release(a);
    expect(pool.numFreeBlocks).toBe(3);
    pool.touch(pool.lookup('h')!);
    expect(pool.numFreeBlocks).toBe(2);
    expect(pool.freeBlockIds()).not.toContain(a);
  });

  test('a second block with an already cached hash is not advertised', () => {
    const pool = new BlockPool(4);
    const a = pool.allocate();
    const b = pool.allocate();
    pool.cache(a, 'same');
    pool.cache(b, 'same');
    expect(pool.lookup('same')).toBe(a);
    expect(pool.hashOf(b)).toBeUndefined();
    expect(pool.numCachedBlocks).toBe(1);
  });
});
