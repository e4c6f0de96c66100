import { defineConfig } from 'vitest/config';

// Tests import sibling workspace packages from their TypeScript sources (the "flashserve-source"
// export condition), so a test run never depends on a stale dist/.
export default defineConfig({
  resolve: { conditions: ['flashserve-source'] },
  ssr: { resolve: { conditions: ['flashserve-source'] } },
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // The embedded model is generated once per run, not once per file.
    globalSetup: ['test/global-setup.ts'],
    // The JSON report feeds scripts/test-summary.mjs, which prints the repository-wide totals.
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
