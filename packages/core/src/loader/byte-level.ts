// Byte-level BPE (GPT-2 style, as DeepSeek's tokenizers use) spells every byte as one printable
// character: the printable Latin-1 bytes stand for themselves and the other 68 bytes are moved to
// code points 256 and up, in byte order. Inverting that map turns a vocabulary entry back into the
// exact bytes it contributes to decoded text.

const CHAR_TO_BYTE: ReadonlyMap<number, number> = (() => {
  const map = new Map<number, number>();
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
    map.set(printable ? byte : 256 + shifted++, byte);
  }
  return map;
})();

/** The bytes a byte-level vocabulary entry stands for, or undefined if it is not byte-level text. */
export function byteLevelTokenBytes(token: string): Uint8Array | undefined {
  const out = new Uint8Array(token.length);
  let n = 0;
  for (const ch of token) {
    const byte = CHAR_TO_BYTE.get(ch.codePointAt(0)!);
    if (byte === undefined) return undefined;
    out[n++] = byte;
  }
  return out.subarray(0, n);
}
