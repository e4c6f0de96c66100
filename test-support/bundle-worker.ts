// Shared by the packages' tests. Worker threads run plain JavaScript: Node cannot load the TypeScript
// sources vitest runs from.
// This bundles a worker entry (and what it imports, from source) into one .mjs file with esbuild,
// once per test file, the way the bench scripts are built.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildSync } from 'esbuild';

export function bundleWorker(entry: string): URL {
  const outfile = join(mkdtempSync(join(tmpdir(), 'flashserve-worker-')), 'worker.mjs');
  buildSync({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    conditions: ['flashserve-source'],
    outfile,
    logLevel: 'warning',
    // Bundled CommonJS dependencies may call require(); give the ESM bundle one.
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
  });
  return pathToFileURL(outfile);
}
