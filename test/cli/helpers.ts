import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** The project root and the built CLI every black-box test runs. */
export const root = path.resolve(import.meta.dirname, "../..");
export const cli = path.join(root, "dist/cli/main.js");

export interface CliRun {
  status: number | null;
  /** stdout then stderr */
  output: string;
  stdout: string;
  stderr: string;
  cwd: string;
}

/** Run `vmrig ARGS` to completion in `cwd`. */
export function runCli(args: string[], cwd = root, timeoutMs = 900_000): CliRun {
  const r = spawnSync("node", [cli, ...args], { cwd, encoding: "utf8", timeout: timeoutMs });
  return { status: r.status, output: r.stdout + r.stderr, stdout: r.stdout, stderr: r.stderr, cwd };
}

/** A new directory holding inline test files (Playwright-style): name → the object given to defineTest. */
export function writeTests(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-cli-"));
  for (const [name, body] of Object.entries(files)) {
    fs.writeFileSync(
      path.join(dir, `${name}.vmrig.ts`),
      `import { defineTest } from "vmrig";\nexport default defineTest(${body});\n`,
    );
  }
  return dir;
}
