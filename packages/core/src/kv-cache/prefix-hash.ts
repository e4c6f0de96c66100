// Prefix hashes of full KV blocks. A block's hash chains its parent's hash with the block's token ids
// and an optional extra key (reserved for adapters or multimodal inputs), so equal hashes mean equal
// whole prefixes, not just equal blocks.
//
// NOTE: SHA-256 rather than a fast non-cryptographic hash: prefix blocks are shared between users,
// and a hash an attacker can collide would let one user's prompt read another's cached KV (vLLM's
// CVE-2025-25183 was exactly this). The cost is one digest per 64 tokens, measured in bench/.

import { createHash } from 'node:crypto';

export type BlockHash = string;

let scratch = new Int32Array(64);

/** Hash of tokens[start, end) as the block following `parent` (null for the first block). */
export function hashBlock(
  parent: BlockHash | null,
  tokens: ArrayLike<number>,
  start: number,
  end: number,
  extraKey?: string,
): BlockHash {
  const n = end - start;
  if (scratch.length < n) scratch = new Int32Array(n);
  for (let i = 0; i < n; i++) scratch[i] = tokens[start + i]!;
  const h = createHash('sha256');
  // The separators keep (parent, tokens, key) unambiguous: the parent is fixed-width base64, the
  // token bytes are length-prefixed.
  h.update(parent ?? '-');
  h.update(`|${n}|`);
  h.update(new Uint8Array(scratch.buffer, 0, n * 4));
  if (extraKey !== undefined) h.update(`|${extraKey}`);
  return h.digest('base64');
}

/** Extends `hashes` (hashes of the first hashes.length full blocks) to cover every full block of
 * tokens[0, numTokens). Returns the same array. */
export function extendBlockHashes(
  hashes: BlockHash[],
  tokens: ArrayLike<number>,
  numTokens: number,
  blockSize: number,
  extraKey?: string,
): BlockHash[] {
  const numFull = Math.floor(numTokens / blockSize);
  for (let i = hashes.length; i < numFull; i++) {
    hashes.push(hashBlock(i === 0 ? null : hashes[i - 1]!, tokens, i * blockSize, (i + 1) * blockSize, extraKey));
  }
  return hashes;
}
