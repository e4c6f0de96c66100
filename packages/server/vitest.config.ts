import { packageVitestConfig } from '../../vitest.shared.js';

export default packageVitestConfig({
  // The embedded model is generated once per run, not once per file.
  test: { globalSetup: ['test/global-setup.ts'] },
});
