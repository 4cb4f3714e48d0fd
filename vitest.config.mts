import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Native addons: one process per test file, so a crash is contained and reported.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
  },
});
