// safetensors checkpoints, single-file or sharded (model.safetensors.index.json), read tensor by tensor.
//
// A file is: 8 bytes little-endian header length N, N bytes of JSON
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}), then the data, with
// offsets relative to the end of the header. Only the header is read when a file is opened; each
// tensor is read from its offset when asked for, so a checkpoint is never held twice in memory.

import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { DType, HostData } from '../device/device.js';
import { loadFileMalformed, loadFileMissing, loadTensorMissing } from '../errors.js';
import { readJsonObject } from './json-file.js';

/** One tensor read from a checkpoint, in its stored encoding (bf16/f16 as raw 16-bit words). */
export interface HostTensor {
  readonly data: HostData;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/** Where model weights come from: a checkpoint on disk, or generated (dummy) weights. */
export interface WeightSource {
  /** Human-readable origin for error messages, e.g. "/models/x (3 safetensors files)". */
  readonly description: string;
  names(): string[];
  has(name: string): boolean;
  /** Shape and stored dtype without reading the data. */
  info(name: string): { readonly dtype: string; readonly shape: readonly number[] };
  read(name: string): HostTensor;
}

interface Entry {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

const ELEMENT_BYTES: Readonly<Record<string, number>> = { F32: 4, BF16: 2, F16: 2, I32: 4 };

/** One .safetensors file; keeps a file descriptor open until close(). */
export class SafetensorsFile {
  readonly path: string;
  readonly #fd: number;
  readonly #dataStart: number;
  readonly #entries = new Map<string, Entry>();

  constructor(path: string) {
    if (!existsSync(path)) throw loadFileMissing(path, 'it holds model weights');
    this.path = path;
    this.#fd = openSync(path, 'r');
    try {
      const size = fstatSync(this.#fd).size;
      const lenBuf = Buffer.alloc(8);
      if (size < 8 || readSync(this.#fd, lenBuf, 0, 8, 0) !== 8)
        throw loadFileMalformed(path, 'shorter than its 8-byte header length');
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen <= 0 || 8 + headerLen > size) {
        throw loadFileMalformed(path, `header length ${headerLen} does not fit a file of ${size} bytes`);
      }
      const headerBuf = Buffer.alloc(headerLen);
      readSync(this.#fd, headerBuf, 0, headerLen, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBuf.toString('utf8'));
      } catch (e) {
        throw loadFileMalformed(
          path,
          `header is not valid JSON (${e instanceof Error ? e.message : String(e)})`,
        );
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) {
        throw loadFileMalformed(path, 'header is not a JSON object');
      }
      this.#dataStart = 8 + headerLen;
      const dataBytes = size - this.#dataStart;
      for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
        if (name === '__metadata__') continue;
        this.#entries.set(name, parseEntry(path, name, value, dataBytes));
      }
    } catch (e) {
      closeSync(this.#fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.#entries.keys()];
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  info(name: string): { dtype: string; shape: readonly number[] } {
    const e = this.#entries.get(name);
    if (e === undefined) throw loadTensorMissing(name, this.path);
    return { dtype: e.dtype, shape: e.shape };
  }

  read(name: string): HostTensor {
    const e = this.#entries.get(name);
    if (e === undefined) throw loadTensorMissing(name, this.path);
    const bytes = e.end - e.begin;
    // Typed arrays over a fresh, aligned buffer; the file bytes are read straight into it.
    let data: HostData;
    let dtype: DType;
    switch (e.dtype) {
      case 'F32':
        data = new Float32Array(bytes / 4);
        dtype = 'f32';
        break;
      case 'BF16':
        data = new Uint16Array(bytes / 2);
        dtype = 'bf16';
        break;
      case 'F16':
        data = new Uint16Array(bytes / 2);
        dtype = 'f16';
        break;
      case 'I32':
        data = new Int32Array(bytes / 4);
        dtype = 'i32';
        break;
      default:
        throw loadFileMalformed(
          this.path,
          `tensor "${name}" has dtype ${e.dtype} (supported: F32, BF16, F16, I32)`,
        );
    }
    const view = new Uint8Array(data.buffer, data.byteOffset, bytes);
    let done = 0;
    while (done < bytes) {
      const n = readSync(this.#fd, view, done, bytes - done, this.#dataStart + e.begin + done);
      if (n <= 0) throw loadFileMalformed(this.path, `tensor "${name}" is cut short`);
      done += n;
    }
    return { data, dtype, shape: e.shape };
  }

  close(): void {
    closeSync(this.#fd);
  }
}

function parseEntry(path: string, name: string, value: unknown, dataBytes: number): Entry {
  const bad = (detail: string) => loadFileMalformed(path, `tensor "${name}": ${detail}`);
  if (typeof value !== 'object' || value === null) throw bad('header entry is not an object');
  const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof v.dtype !== 'string') throw bad('no dtype');
  if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isInteger(d) && d >= 0)) throw bad('bad shape');
  const offs = v.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)) {
    throw bad('bad data_offsets');
  }
  const [begin, end] = offs as [number, number];
  if (begin > end || end > dataBytes)
    throw bad(`data_offsets [${begin}, ${end}] outside the ${dataBytes} data bytes`);
  const shape = v.shape as number[];
  const elem = ELEMENT_BYTES[v.dtype];
  if (elem !== undefined) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n * elem !== end - begin)
      throw bad(`${end - begin} bytes for ${v.dtype} shape [${shape.join(', ')}]`);
  }
  return { dtype: v.dtype, shape, begin, end };
}

/**
 * The weights of a model directory: `model.safetensors.index.json` (sharded) if present, else
 * `model.safetensors`, else every `*.safetensors` file in the directory.
 */
export class SafetensorsCheckpoint implements WeightSource {
  readonly description: string;
  readonly #files: SafetensorsFile[];
  readonly #where = new Map<string, SafetensorsFile>();

  constructor(dir: string) {
    const indexPath = join(dir, 'model.safetensors.index.json');
    const files: string[] = [];
    let weightMap: Map<string, string> | undefined;
    if (existsSync(indexPath)) {
      const index = readJsonObject(indexPath, 'it lists the weight shards');
      const wm = index['weight_map'];
      if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
        throw loadFileMalformed(indexPath, '"weight_map" must be an object of tensor name -> file');
      }
      weightMap = new Map();
      for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
        if (typeof file !== 'string')
          throw loadFileMalformed(indexPath, `"weight_map.${name}" must be a file name`);
        weightMap.set(name, file);
        if (!files.includes(file)) files.push(file);
      }
      for (const f of files) {
        if (!existsSync(join(dir, f))) throw loadFileMissing(join(dir, f), `${indexPath} maps tensors to it`);
      }
    } else if (existsSync(join(dir, 'model.safetensors'))) {
      files.push('model.safetensors');
    } else {
      throw loadFileMissing(
        join(dir, 'model.safetensors'),
        'the model weights (nor model.safetensors.index.json)',
      );
    }
    this.#files = [];
    try {
      for (const f of files) this.#files.push(new SafetensorsFile(join(dir, f)));
    } catch (e) {
      this.close();
      throw e;
    }
    for (const file of this.#files) for (const name of file.names()) this.#where.set(name, file);
    if (weightMap !== undefined) {
      for (const [name, file] of weightMap) {
        if (!this.#where.has(name))
          throw loadTensorMissing(name, `${join(dir, file)} (named by ${indexPath})`);
      }
    }
    this.description = `${dir} (${this.#files.length} safetensors file${this.#files.length === 1 ? '' : 's'})`;
  }

  names(): string[] {
    return [...this.#where.keys()];
  }

  has(name: string): boolean {
    return this.#where.has(name);
  }

  info(name: string): { dtype: string; shape: readonly number[] } {
    return this.#file(name).info(name);
  }

  read(name: string): HostTensor {
    return this.#file(name).read(name);
  }

  close(): void {
    for (const f of this.#files) f.close();
  }

  #file(name: string): SafetensorsFile {
    const f = this.#where.get(name);
    if (f === undefined) throw loadTensorMissing(name, this.description);
    return f;
  }
}
