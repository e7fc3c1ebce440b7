import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // VM tests share 2 cores; run files one at a time, tests in a file in order.
    fileParallelism: false,
    pool: "forks",
    testTimeout: 600_000,
    hookTimeout: 900_000,
  },
});
