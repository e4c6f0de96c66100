// Reading small JSON files of a model directory with errors that name the file and the field.

import { existsSync, readFileSync } from 'node:fs';
import { loadFileMalformed, loadFileMissing } from '../errors.js';

export type JsonObject = { readonly [key: string]: unknown };

/** Parses `path` as a JSON object; `why` says what the file is needed for (used when it is missing). */
export function readJsonObject(path: string, why: string): JsonObject {
  if (!existsSync(path)) throw loadFileMissing(path, why);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw loadFileMalformed(path, `invalid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw loadFileMalformed(path, 'expected a JSON object at the top level');
  }
  return value as JsonObject;
}

/** Typed field access that reports the file and key on a wrong type. */
export class JsonFields {
  constructor(
    readonly obj: JsonObject,
    readonly file: string,
    readonly prefix = '',
  ) {}

  #bad(key: string, want: string): never {
    const got = this.obj[key];
    throw loadFileMalformed(this.file, `"${this.prefix}${key}" must be ${want}, got ${JSON.stringify(got)}`);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  int(key: string): number {
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v)) return this.#bad(key, 'an integer');
    return v;
  }

  intOr(key: string, fallback: number): number {
    return this.has(key) ? this.int(key) : fallback;
  }

  /** An integer, or null when absent or null. */
  intOrNull(key: string): number | null {
    return this.has(key) ? this.int(key) : null;
  }

  num(key: string): number {
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.#bad(key, 'a number');
    return v;
  }

  numOr(key: string, fallback: number): number {
    return this.has(key) ? this.num(key) : fallback;
  }

  numOrUndefined(key: string): number | undefined {
    return this.has(key) ? this.num(key) : undefined;
  }

  bool(key: string, fallback: boolean): boolean {
    if (!this.has(key)) return fallback;
    const v = this.obj[key];
    if (typeof v !== 'boolean') return this.#bad(key, 'true or false');
    return v;
  }

  str(key: string, fallback?: string): string {
    if (!this.has(key)) {
      if (fallback !== undefined) return fallback;
      return this.#bad(key, 'a string');
    }
    const v = this.obj[key];
    if (typeof v !== 'string') return this.#bad(key, 'a string');
    return v;
  }

  /** A nested object, or undefined when absent or null. */
  object(key: string): JsonFields | undefined {
    if (!this.has(key)) return undefined;
    const v = this.obj[key];
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return this.#bad(key, 'an object');
    return new JsonFields(v as JsonObject, this.file, `${this.prefix}${key}.`);
  }

  /** An integer or a list of integers (as eos_token_id may be), or [] when absent. */
  intList(key: string): number[] {
    if (!this.has(key)) return [];
    const v = this.obj[key];
    if (typeof v === 'number' && Number.isInteger(v)) return [v];
    if (Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isInteger(x)))
      return v as number[];
    return this.#bad(key, 'an integer or a list of integers');
  }
}
