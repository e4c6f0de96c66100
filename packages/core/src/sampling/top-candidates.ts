// Partial selection of the most likely tokens without sorting the whole vocabulary.
//
// Order: higher value first, lower token id first among equals, so that the result is a pure
// function of the row (needed for reproducible seeded sampling).

/** Rearranges idx[0, n) so that its first k entries are the k best by `v` (in no order), O(n). */
export function selectTop(idx: Int32Array, n: number, k: number, v: Float32Array): void {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    // Median of three as the pivot keeps already-ordered rows from going quadratic.
    const mid = (lo + hi) >>> 1;
    if (before(idx[mid]!, idx[lo]!, v)) swap(idx, mid, lo);
    if (before(idx[hi]!, idx[lo]!, v)) swap(idx, hi, lo);
    if (before(idx[hi]!, idx[mid]!, v)) swap(idx, hi, mid);
    const pivot = idx[mid]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (before(idx[i]!, pivot, v)) i++;
      while (before(pivot, idx[j]!, v)) j--;
      if (i <= j) {
        swap(idx, i, j);
        i++;
        j--;
      }
    }
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else return;
  }
}

/** Sorts idx[0, k) best first. */
export function sortTop(idx: Int32Array, k: number, v: Float32Array): void {
  const head = idx.subarray(0, k);
  head.sort((a, b) => (before(a, b, v) ? -1 : before(b, a, v) ? 1 : 0));
}

function before(a: number, b: number, v: Float32Array): boolean {
  const va = v[a]!;
  const vb = v[b]!;
  return va > vb || (va === vb && a < b);
}

function swap(idx: Int32Array, i: number, j: number): void {
  const t = idx[i]!;
  idx[i] = idx[j]!;
  idx[j] = t;
}
