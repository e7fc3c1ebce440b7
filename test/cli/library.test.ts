import { spawn, spawnSync } from "node:child_process";
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

function sh(cmd: string, args: string[], cwd = project, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: "utf8",
    timeout: 900_000,
    env: { ...process.env, CI: "1", FORCE_COLOR: "0", NO_COLOR: "1", ...env },
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

  it("keeps a failed Vitest test's screenshots and journals, and stops its machines", () => {
    fs.writeFileSync(
      path.join(project, "vitest/failing.test.ts"),
      `import { test as base } from "vitest";
import { withMachines } from "vmrig/vitest";
import { web } from "../machines.js";
const test = withMachines(base, web, { name: "vitest-failing" });
test("fails on purpose", async ({ machines: { server } }) => {
  await server.succeed("exit 3");
});
`,
    );
    const r = sh("npx", ["vitest", "run", "vitest/failing.test.ts"]);
    expect(r.status).toBe(1);
    // the report names the machine, the call and the status
    expect(r.output).toMatch(/server.*succeed|succeed.*server/);
    expect(r.output).toContain("exit 3");
    const dir = path.join(project, "vmrig-results/vitest-failing");
    expect(fs.existsSync(path.join(dir, "failure-server.png"))).toBe(true);
    expect(fs.readFileSync(path.join(dir, "failure-client-journal.txt"), "utf8")).toMatch(/systemd|kernel/);
    expect(qemuPids().filter((p) => !qemuBefore.includes(p))).toEqual([]);
    fs.rmSync(path.join(project, "vitest/failing.test.ts"));
  });

  it("leaves no QEMU, lock helper or temporary folder when Vitest is interrupted with Ctrl-C", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-library-tmp-"));
    const vitest = spawn("npx", ["vitest", "run"], {
      cwd: project,
      env: { ...process.env, CI: "1", TMPDIR: tmp },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group, as a terminal's Ctrl-C reaches it
    });
    let out = "";
    const seen = new Promise<void>((resolve) => {
      const on = (d: Buffer) => {
        out += d.toString();
        if (/starting vm|restored from boot snapshot/.test(out)) resolve();
      };
      vitest.stdout.on("data", on);
      vitest.stderr.on("data", on);
    });
    await seen;
    process.kill(-vitest.pid!, "SIGINT");
    await new Promise((r) => vitest.once("exit", r));
    // QEMU dies with the worker that started it (parent-death signal), at once
    await new Promise((r) => setTimeout(r, 2000));
    expect(qemuPids().filter((p) => !qemuBefore.includes(p))).toEqual([]);
    expect(spawnSync("pgrep", ["-f", "flock --nonblock --exclusive"], { encoding: "utf8" }).stdout.trim()).toBe("");
    // what a killed worker could not remove, the next start sweeps (its owner is dead)
    const again = sh("npx", ["vitest", "run", "vitest/faults.test.ts"], project, { TMPDIR: tmp });
    expect(again.status, again.output).toBe(0);
    const left = fs.readdirSync(tmp).filter((f) => f.startsWith("vmrig-"));
    expect(left).toEqual([]);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("leaves no QEMU running after the suites", () => {
    expect(qemuPids().filter((p) => !qemuBefore.includes(p))).toEqual([]);
  });
});
