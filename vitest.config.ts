import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    // Starts PostgreSQL and the S3 server once for the whole run (unless DATABASE_URL / S3_ENDPOINT are given).
    globalSetup: ['test/support/global-setup.ts'],
    // A hang guard, not a performance bound: CLI tests start several processes each, slow on a busy 2-core machine.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Two cores: two files at a time, each with its own database and bucket.
    maxWorkers: 2,
    reporters: ['default'],
    // Registries started by the tests (in process or as `pnpm start`) check every tRPC answer
    // against its zod schema as well (packages/server/src/trpc/answer.ts); the benchmarks do not.
    env: { SWARM_CHECK_ANSWERS: '1' },
  },
});
