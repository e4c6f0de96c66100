import { defineConfig, mergeConfig, type ViteUserConfig } from 'vitest/config';

// The vitest settings every package shares; a package's vitest.config.ts adds only what is its own.
const shared = defineConfig({
  // Tests import sibling workspace packages from their TypeScript sources (the "flashserve-source"
  // export condition), so a test run never depends on a stale dist/.
  resolve: { conditions: ['flashserve-source'] },
  ssr: { resolve: { conditions: ['flashserve-source'] } },
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // The JSON report feeds scripts/test-summary.mjs, which prints the repository-wide totals.
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});

export function packageVitestConfig(own: ViteUserConfig = {}): ViteUserConfig {
  return mergeConfig(shared, own);
}
