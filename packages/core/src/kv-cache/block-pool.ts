// The pool of KV cache blocks: reference counts, the free queue and the prefix-cache map.
//
// Invariants:
// - Block 0 is the null block: never allocated, never freed. Padding entries of block tables point at
//   it, so a backend that reads past a sequence's length reads a block no request owns.
// - A block is in the free queue exactly when its reference count is 0. Allocation takes the head;
//   every operation is O(1) (intrusive doubly linked list over typed arrays, sentinel at index
//   numBlocks).
// - A free block may still hold a cached prefix (it has a hash). Such blocks are appended at the tail
//   so that they are evicted least-recently-freed first; blocks without a hash hold nothing worth
//   keeping and go to the head, to be reused before any cached block is evicted.
// - The hash map holds at most one block per hash. A block filled with content that is already
//   cached elsewhere stays unhashed: block tables are append-only, so the duplicate is not merged,
//   it is simply not advertised.

import type { BlockHash } from './prefix-hash.js';

export const NULL_BLOCK = 0;

export class BlockPool {
  /** Blocks including the null block. */
  readonly numBlocks: number;
  readonly #refCount: Int32Array;
  readonly #prev: Int32Array;
  readonly #next: Int32Array;
  readonly #sentinel: number;
  readonly #hashOf: (BlockHash | undefined)[];
  readonly #cached = new Map<BlockHash, number>();
  #numFree = 0;

  constructor(numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 2) {
      throw new RangeError(`BlockPool needs at least 2 blocks (one is the null block), got ${numBlocks}`);
    }
    this.numBlocks = numBlocks;
    this.#refCount = new Int32Array(numBlocks);
    this.#prev = new Int32Array(numBlocks + 1);
    this.#next = new Int32Array(numBlocks + 1);
    this.#sentinel = numBlocks;
    this.#hashOf = new Array<BlockHash | undefined>(numBlocks).fill(undefined);
    this.#prev[this.#sentinel] = this.#sentinel;
    this.#next[this.#sentinel] = this.#sentinel;
    // The null block is permanently referenced so it can never enter the free queue.
    this.#refCount[NULL_BLOCK] = 1;
    for (let b = 1; b < numBlocks; b++) this.#pushTail(b);
  }

  /** Blocks that can be handed out (free, cached or not). */
  get numFreeBlocks(): number {
    return this.#numFree;
  }

  /** Blocks a request can ever use (all but the null block). */
  get numUsableBlocks(): number {
    return this.numBlocks - 1;
  }

  /** Fraction of usable blocks referenced by some request, 0..1. */
  get usage(): number {
    return 1 - this.#numFree / this.numUsableBlocks;
  }

  refCount(blockId: number): number {
    return this.#refCount[blockId] ?? 0;
  }

  hashOf(blockId: number): BlockHash | undefined {
    return this.#hashOf[blockId];
  }

  /** The cached block holding `hash`, if any (free or in use). */
  lookup(hash: BlockHash): number | undefined {
    return this.#cached.get(hash);
  }

  /** Takes the head of the free queue (evicting its cached content). The caller checks numFreeBlocks. */
  allocate(): number {
    const b = this.#next[this.#sentinel]!;
    if (b === this.#sentinel) throw new Error('BlockPool.allocate: no free block (caller must check first)');
    this.#unlink(b);
    const h = this.#hashOf[b];
    if (h !== undefined) {
      this.#cached.delete(h);
      this.#hashOf[b] = undefined;
    }
    this.#refCount[b] = 1;
    return b;
  }

  /** Adds a reference to a block found in the prefix cache, taking it out of the free queue if idle. */
  touch(blockId: number): void {
    if (this.#refCount[blockId] === 0) this.#unlink(blockId);
    this.#refCount[blockId]!++;
  }

  /** Drops one reference; at zero the block joins the free queue (see the ordering invariant). */
  release(blockId: number): void {
    const rc = --this.#refCount[blockId]!;
    if (rc > 0) return;
    if (rc < 0 || blockId === NULL_BLOCK)
      throw new Error(`BlockPool.release: block ${blockId} was not in use`);
    if (this.#hashOf[blockId] === undefined) this.#pushHead(blockId);
    else this.#pushTail(blockId);
  }

  /** Advertises a full, computed block under its prefix hash (no-op if the hash is already cached). */
  cache(blockId: number, hash: BlockHash): void {
    if (this.#hashOf[blockId] !== undefined || this.#cached.has(hash)) return;
    this.#cached.set(hash, blockId);
    this.#hashOf[blockId] = hash;
  }

  /** Number of blocks in the prefix-cache map (in use or free). */
  get numCachedBlocks(): number {
    return this.#cached.size;
  }

  /** Free block ids from head (next to be allocated) to tail. For tests and debugging: O(n). */
  freeBlockIds(): number[] {
    const ids: number[] = [];
    for (let b = this.#next[this.#sentinel]!; b !== this.#sentinel; b = this.#next[b]!) ids.push(b);
    return ids;
  }

  #unlink(b: number): void {
    const p = this.#prev[b]!;
    const n = this.#next[b]!;
    this.#next[p] = n;
    this.#prev[n] = p;
    this.#numFree--;
  }

  #pushTail(b: number): void {
    const last = this.#prev[this.#sentinel]!;
    this.#next[last] = b;
    this.#prev[b] = last;
    this.#next[b] = this.#sentinel;
    this.#prev[this.#sentinel] = b;
    this.#numFree++;
  }

  #pushHead(b: number): void {
    const first = this.#next[this.#sentinel]!;
    this.#prev[first] = b;
    this.#next[b] = first;
    this.#prev[b] = this.#sentinel;
    this.#next[this.#sentinel] = b;
    this.#numFree++;
  }
}
