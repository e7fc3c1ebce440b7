import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuPids } from "../vm/helpers.js";
import { root } from "./helpers.js";

// vmrig as a library (SPEC §12), as a user gets it: `npm pack`, then a fresh project that
// installs the tarball and runs examples/library's suites in Vitest, node:test and
// Playwright Test against real machines.
let project: string;
const qemuBefore = qemuPids();

function sh(cmd: string, args: string[], cwd = project, timeoutMs = 900_000) {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: "utf8",
    timeout: timeoutMs,
    env: { ...process.env, CI: "1", FORCE_COLOR: "0", NO_COLOR: "1" },
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

beforeAll(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-library-"));
  // the package exactly as published (dist was built by `npm test`'s first step)
  const pack = sh("npm", ["pack", "--ignore-scripts", "--pack-destination", project], root);
  expect(pack.status, pack.output).toBe(0);
  const tarball = fs.readdirSync(project).find((f) => f.endsWith(".tgz"))!;
  fs.cpSync(path.join(root, "examples/library"), project, {
    recursive: true,
    filter: (src) => !src.includes("node_modules") && !src.includes("test-results"),
  });
  const install = sh("npm", ["install", "--no-audit", "--no-fund", "--save-dev", `./${tarball}`]);
  expect(install.status, install.output).toBe(0);
}, 600_000);

afterAll(() => {
  if (project) fs.rmSync(project, { recursive: true, force: true });
});

describe("vmrig from its packed tarball, in a fresh project", () => {
  it("installs without the type-checker or the linter, and its .d.ts shows no internals", () => {
    const installed = path.join(project, "node_modules");
    expect(fs.existsSync(path.join(installed, "vmrig/dist/index.js"))).toBe(true);
    // vmrig's own dependencies do not bring eslint (typescript comes only from the project's own devDependencies)
    expect(fs.existsSync(path.join(installed, "eslint"))).toBe(false);
    expect(fs.existsSync(path.join(installed, "typescript-eslint"))).toBe(false);
    const machineDts = fs.readFileSync(path.join(installed, "vmrig/dist/machine/machine.d.ts"), "utf8");
    for (const internal of ["internals", "kill(", "prepare(", "get pid"])
      expect(machineDts, `Machine's published type shows ${internal}`).not.toContain(internal);
    // the examples type-check against the published types, with the declarations checked too
    const tsc = sh("npx", ["tsc", "-p", "tsconfig.json"]);
    expect(tsc.status, tsc.output).toBe(0);
  });

  it("runs a Vitest suite: two files in parallel workers, two tests sharing one topology through a checkpoint", () => {
    const r = sh("npx", ["vitest", "run"]);
    expect(r.output).toMatch(/Test Files\s+2 passed \(2\)/);
    expect(r.output).toMatch(/Tests\s+3 passed \(3\)/);
    expect(r.status, r.output).toBe(0);
    // each file kept its log and consoles under ./vmrig-results/<name>
    for (const name of ["vitest-web", "vitest-faults"]) {
      const dir = path.join(project, "vmrig-results", name);
      expect(fs.readFileSync(path.join(dir, "log.txt"), "utf8")).toContain('checkpoint "vmrig-clean": saving');
      expect(fs.existsSync(path.join(dir, "server-console.log"))).toBe(true);
    }
    // the second test of web.test.ts began from the first one's checkpoint
    const web = fs.readFileSync(path.join(project, "vmrig-results/vitest-web/log.txt"), "utf8");
    expect(web).toContain('restoring checkpoint "vmrig-clean"');
  });

  it("runs a node:test suite, with a host port that vmrig picked", () => {
    const r = sh("node", ["--test", "node-test/"]);
    expect(r.output).toMatch(/# pass 2/);
    expect(r.status, r.output).toBe(0);
  });

  it("runs a Playwright Test suite with the machines as a worker fixture", () => {
    const r = sh("npx", ["playwright", "test"]);
    expect(r.output).toMatch(/2 passed/);
    expect(r.status, r.output).toBe(0);
  });

  it("leaves no QEMU running after the suites", () => {
    expect(qemuPids().filter((p) => !qemuBefore.includes(p))).toEqual([]);
  });
});
