import { defineConfig } from 'vitest/config';

// Integration tests start real jobs with ivrun; the machine has 2 cores, so files run one or two
// at a time and every test has a generous (but finite) timeout: a hang fails, it never blocks CI.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/build.ts', 'test/helpers/cluster-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
