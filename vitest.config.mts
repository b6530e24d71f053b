import { defineConfig } from 'vitest/config';

// Temporal's native runtime must not run inside worker threads: every test file runs in its own forked
// process, one file at a time, so lab and worker tests never share a Temporal runtime or a libvirt lab.
export default defineConfig({
  test: {
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    include: ['test/**/*.test.ts'],
  },
});
