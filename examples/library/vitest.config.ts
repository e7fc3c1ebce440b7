import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["vitest/**/*.test.ts"],
    // Vitest's default pool (forks): each file in its own process, files in parallel. vmrig's
    // cold-boot limit holds across them: they share one cache.
    testTimeout: 300_000,
    hookTimeout: 900_000,
  },
});
