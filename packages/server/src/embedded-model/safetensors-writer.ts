// Writes a .safetensors file: an 8-byte little-endian header length, a JSON header mapping each name
// to {dtype, shape, data_offsets} (offsets relative to the data section), then the raw tensor bytes.
// The header is padded with spaces to a multiple of 8 so the data section stays aligned.

import { closeSync, openSync, writeSync } from 'node:fs';

export interface TensorBytes {
  readonly name: string;
  readonly dtype: 'BF16' | 'F32';
  readonly shape: readonly number[];
  readonly data: Uint16Array | Float32Array;
}

export function writeSafetensors(
  path: string,
  tensors: readonly TensorBytes[],
  metadata: Record<string, string>,
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.data.byteLength;
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, length);
    writeSync(fd, headerBytes);
    for (const t of tensors)
      writeSync(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  } finally {
    closeSync(fd);
  }
}
