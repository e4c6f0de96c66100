// Generates the embedded model once per test run, into a temporary cache directory that every test
// file then loads from (the same path as `flashserve serve` with FLASHSERVE_CACHE_DIR set).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { ensureEmbeddedModel } from '../src/embedded-model/materialize.js';

declare module 'vitest' {
  export interface ProvidedContext {
    cacheDir: string;
  }
}

export default function setup(project: TestProject): () => void {
  const cacheDir = mkdtempSync(join(tmpdir(), 'flashserve-test-cache-'));
  ensureEmbeddedModel({ cacheDir, seed: 0 });
  project.provide('cacheDir', cacheDir);
  return () => rmSync(cacheDir, { recursive: true, force: true });
}
