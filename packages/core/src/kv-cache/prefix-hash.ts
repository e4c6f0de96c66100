// Prefix hashes of full KV blocks. A block's hash chains its parent's hash with the block's token ids
// and an optional extra key (reserved for adapters or multimodal inputs), so equal hashes mean equal
// whole prefixes, not just equal blocks.
//
// NOTE: SHA-256 rather than a fast non-cryptographic hash: prefix blocks are shared between users,
// and a hash an attacker can collide would let one user's prompt read another's cached KV (vLLM's
// CVE-2025-25183 was exactly this). The cost is one digest per 64 tokens, measured in bench/.

import { hash } from 'node:crypto';

export type BlockHash = string;

/** Reused input: [parent hash (44 base64 chars, or "-") | token count | tokens as int32 | key]. */
let bytes = Buffer.from(new ArrayBuffer(4096));
let words = new Int32Array(bytes.buffer);
const TOKENS_AT = 48;

/** Hash of tokens[start, end) as the block following `parent` (null for the first block). */
export function hashBlock(
  parent: BlockHash | null,
  tokens: ArrayLike<number>,
  start: number,
  end: number,
  extraKey?: string,
): BlockHash {
  const n = end - start;
  const keyBytes = extraKey === undefined ? 0 : Buffer.byteLength(extraKey);
  const size = TOKENS_AT + 4 * n + keyBytes;
  if (bytes.length < size) {
    bytes = Buffer.from(new ArrayBuffer(size * 2));
    words = new Int32Array(bytes.buffer);
  }
  // Fixed-width fields keep (parent, tokens, key) unambiguous. Token ids go in as int32 words
  // (native little-endian on every platform Node ships for).
  bytes.fill(0, 0, 44);
  bytes.write(parent ?? '-', 0, 44, 'latin1');
  words[11] = n;
  const w = TOKENS_AT / 4;
  for (let i = 0; i < n; i++) words[w + i] = tokens[start + i]!;
  if (extraKey !== undefined) bytes.write(extraKey, TOKENS_AT + 4 * n, 'utf8');
  return hash('sha256', bytes.subarray(0, size), 'base64');
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
    hashes.push(
      hashBlock(i === 0 ? null : hashes[i - 1]!, tokens, i * blockSize, (i + 1) * blockSize, extraKey),
    );
  }
  return hashes;
}
