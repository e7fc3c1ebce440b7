import { spawn, spawnSync, type ChildProcess } from "node:child_process";
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

/** `vmrig ARGS` running in the background: its output so far, a wait for a line, and its exit. */
export interface RunningCli {
  child: ChildProcess;
  output(): string;
  /** resolves once the output matches `re`; rejects with the output so far if it does not within `timeoutMs` or the CLI exits */
  waitFor(re: RegExp, timeoutMs: number): Promise<void>;
  exited(): Promise<number | null>;
}

export function spawnCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): RunningCli {
  return spawnRunning("node", [cli, ...args], cwd, env);
}

/** Any command (a wrapper around the CLI: `unshare … node cli …`) as a RunningCli. */
export function spawnRunning(
  cmd: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): RunningCli {
  const child = spawn(cmd, args, { cwd, env });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  return {
    child,
    output: () => out,
    exited: () => exit,
    async waitFor(re, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(out)) {
        if (child.exitCode !== null || Date.now() > deadline)
          throw new Error(`the CLI's output did not match ${re} (exit ${child.exitCode}):\n${out.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
