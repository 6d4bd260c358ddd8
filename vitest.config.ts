import { defineConfig } from 'vitest/config';

// Three tiers: unit (fast, fakes only at the provider boundary), integration (real LXC, QEMU, Incus,
// SSH, Chromium), e2e (the built CLI spawned as a user runs it). scripts/test.mjs runs them in that
// order, the real-guest tiers one file at a time (they share the host's network and daemons). A test that
// fails is run again (twice at most): a loaded machine can starve a boot, a watcher or a timer past a
// timeout once. scripts/test.mjs names every test that passed only on a retry, with its first failure.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 20_000, retry: 2 } },
      { test: { name: 'integration', include: ['test/integration/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 600_000, retry: 2 } },
      { test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 600_000, retry: 2 } },
    ],
  },
});
