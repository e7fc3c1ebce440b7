import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "playwright",
  timeout: 600_000,
  reporter: "list",
});
