// Safetensors checkpoints read straight into device memory, tensor by tensor, with progress.
// The header (8-byte little-endian length, then JSON of {name: {dtype, shape, data_offsets}}) is
// parsed here; the data never passes through a JS buffer (CudaDevice.uploadFromFile).
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import type { DType } from '@flashserve/core';
import type { CudaDevice } from './cuda-device.js';
import type { CudaTensor } from './tensor.js';

export interface SafetensorsEntry {
  readonly name: string;
  readonly file: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Absolute byte offset of the data in `file`. */
  readonly offset: number;
  readonly bytes: number;
}

const DTYPES: Readonly<Record<string, { dtype: DType; bytes: number }>> = {
  F32: { dtype: 'f32', bytes: 4 },
  BF16: { dtype: 'bf16', bytes: 2 },
  F16: { dtype: 'f16', bytes: 2 },
  I32: { dtype: 'i32', bytes: 4 },
};

/** The tensors of one .safetensors file, from its header only. */
export function readSafetensorsHeader(file: string): SafetensorsEntry[] {
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    const lenBuf = Buffer.alloc(8);
    if (readSync(fd, lenBuf, 0, 8, 0) !== 8)
      throw new Error(`${file}: shorter than the 8-byte header length`);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || 8 + headerLen > size)
      throw new Error(`${file}: header length ${headerLen} does not fit the file`);
    const header = Buffer.alloc(headerLen);
    readSync(fd, header, 0, headerLen, 8);
    const json = JSON.parse(header.toString('utf8')) as Record<string, unknown>;
    const out: SafetensorsEntry[] = [];
    for (const [name, v] of Object.entries(json)) {
      if (name === '__metadata__') continue;
      const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const dt = DTYPES[e.dtype];
      if (dt === undefined)
        throw new Error(`${file}: tensor ${name} has dtype ${e.dtype}, which the CUDA device cannot load`);
      const [begin, end] = e.data_offsets;
      const n = e.shape.reduce((a, b) => a * b, 1);
      if (end - begin !== n * dt.bytes || 8 + headerLen + end > size) {
        throw new Error(`${file}: tensor ${name}'s data_offsets do not match its shape or the file size`);
      }
      out.push({
        name,
        file,
        dtype: dt.dtype,
        shape: e.shape,
        offset: 8 + headerLen + begin,
        bytes: end - begin,
      });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads every tensor of the given files (or those `want` accepts) onto the device.
 * `onProgress(doneBytes, totalBytes)` is called after each tensor, for a progress bar.
 */
export function loadSafetensorsToDevice(
  device: CudaDevice,
  files: readonly string[],
  options: { want?: (name: string) => boolean; onProgress?: (done: number, total: number) => void } = {},
): Map<string, CudaTensor> {
  const entries = files
    .flatMap((f) => readSafetensorsHeader(f))
    .filter((e) => options.want?.(e.name) ?? true);
  const total = entries.reduce((a, e) => a + e.bytes, 0);
  const out = new Map<string, CudaTensor>();
  let done = 0;
  for (const e of entries) {
    out.set(e.name, device.uploadFromFile(e.file, e.offset, e.shape, e.dtype));
    done += e.bytes;
    options.onProgress?.(done, total);
  }
  return out;
}
