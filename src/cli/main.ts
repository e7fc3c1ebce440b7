#!/usr/bin/env node
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { evalNodes, type EvaluatedConfig } from "../config/eval.js";
import { cachedPass, recordPass, resultKey } from "../driver/cache.js";
import { checkTestFile, reportFindings } from "../driver/check.js";
import { gc } from "../driver/gc.js";
import { MemoryBudget, QEMU_OVERHEAD_MIB, shard } from "../driver/schedule.js";
import { sweepLeftovers } from "../driver/leftovers.js";
import { loadTest, type LoadedTest } from "../driver/load.js";
import { writeHtml } from "../reporters/html.js";
import { writeJunit } from "../reporters/junit.js";
import { vmrigVersion } from "../util/version.js";
import { runTest, type TestResult } from "../driver/run.js";
import { buildImages } from "../driver/topology.js";
import { doctor } from "./doctor.js";
import { startRepl } from "./repl.js";
import { VmrigError, errorMessage } from "../util/errors.js";

const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

function findTests(args: string[]): string[] {
  const roots = args.length ? args : ["."];
  const out: string[] = [];
  const walk = (p: string) => {
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (!st) throw new VmrigError(`no such file or directory: ${p}`, { kind: "config" });
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p).sort()) {
        if (e === "node_modules" || e.startsWith(".")) continue;
        walk(path.join(p, e));
      }
    } else if (p.endsWith(".vmrig.ts") || args.includes(p)) out.push(p);
  };
  roots.forEach(walk);
  return out;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number ≥ 1");
  return n;
}

function report(e: unknown): number {
  process.stderr.write(`\n${errorMessage(e)}\n`);
  return e instanceof VmrigError && e.kind === "config" ? EXIT.usage : EXIT.failed;
}

const program = new Command()
  .name("vmrig")
  .description("NixOS-style integration tests on real Debian VMs, driven from typed TypeScript")
  .version(vmrigVersion())
  .showHelpAfterError();

program
  .command("run")
  .description("build, boot and run tests (default: every *.vmrig.ts under the current directory)")
  .argument("[paths...]", "test files or directories")
  .option("--output-dir <dir>", "where results go", "vmrig-results")
  .addOption(new Option("--accel <accel>", "accelerator").choices(["auto", "kvm", "tcg"]).default("auto"))
  .option("--keep-vm-state", "keep disks between runs (NixOS -K)", false)
  .option("--rerun", "run even if an identical run passed before", false)
  .option("--reporter <list>", "list (always), junit: <output-dir>/junit.xml, html: <output-dir>/index.html", "list")
  .option("--global-timeout <seconds>", "override each test's globalTimeout", (v) => Number(v))
  .option("--jobs <n>", "tests run side by side (each waits until the host has memory for its machines)", positiveInt, 1)
  .option("--shard <i/n>", "run only the i-th of n parts of the suite (for several CI machines)")
  .action(async (paths: string[], o: { outputDir: string; accel: "auto" | "kvm" | "tcg"; keepVmState: boolean; rerun: boolean; reporter: string; globalTimeout?: number; jobs: number; shard?: string }) => {
    const ac = new AbortController();
    let interrupts = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      interrupts++;
      process.stderr.write(`\nvmrig: ${sig}: stopping machines and cleaning up${interrupts > 1 ? " (again: still cleaning up)" : ""}\n`);
      ac.abort(sig);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    for (const d of sweepLeftovers()) process.stderr.write(`vmrig: removed ${d}, left behind by a vmrig run that was killed\n`);
    const results: TestResult[] = [];
    let exit: number = EXIT.ok;
    const files = shard(findTests(paths), o.shard);
    const jobs = Math.max(1, Math.floor(o.jobs));
    const memory = new MemoryBudget(Math.floor(os.totalmem() / 1024 / 1024) - 1024);
    // One test from start to end: load, cache lookup, check, run. Failures become results.
    const runOne = async (file: string): Promise<void> => {
      if (ac.signal.aborted) return;
      let key: string;
      let loaded: LoadedTest;
      let configs: Record<string, EvaluatedConfig>;
      try {
        loaded = await loadTest(file);
        configs = evalNodes(loaded.def.nodes, loaded.def.defaults);
        key = resultKey(loaded, configs);
      } catch (e) {
        exit = Math.max(exit, report(e));
        return;
      }
      const hit = o.rerun || o.keepVmState ? undefined : cachedPass(key);
      if (hit) {
        process.stderr.write(`${loaded.def.name}: cached (passed ${hit.passedAt}, nothing it depends on changed; --rerun runs it anyway)\n`);
        results.push({ name: hit.name, file: loaded.file, outcome: "passed", cached: true, configError: false, durationMs: 0, resultDir: "", subtests: [], bootMs: {} });
        return;
      }
      const needMiB = Object.values(configs).reduce((a, c) => a + c.virtualisation.memorySize + QEMU_OVERHEAD_MIB, 0);
      const release = await memory.take(needMiB);
      let result: TestResult;
      try {
        if (ac.signal.aborted) return;
        if (!loaded.def.meta?.broken) await check(loaded);
        const name = loaded.def.name;
        result = await runTest(loaded, { ...o, signal: ac.signal, ...(jobs > 1 ? { print: (l: string) => process.stderr.write(`[${name}] ${l}\n`) } : {}) });
      } catch (e) {
        exit = Math.max(exit, report(e));
        return;
      } finally {
        release();
      }
      if (result.outcome === "passed") {
        recordPass(key, { name: result.name, file: result.file, passedAt: new Date().toISOString(), durationMs: result.durationMs });
      }
      results.push(result);
      if (result.outcome === "failed") {
        exit = Math.max(exit, result.configError ? EXIT.usage : EXIT.failed);
        if (jobs > 1) process.stderr.write(`\n${result.name} FAILED:\n${errorMessage(result.error)}\n`);
      }
    };
    const queue = [...files];
    await Promise.all(
      Array.from({ length: Math.min(jobs, queue.length) }, async () => {
        for (let f = queue.shift(); f !== undefined; f = queue.shift()) await runOne(f);
      }),
    );
    const passed = results.filter((r) => r.outcome === "passed").length;
    const cached = results.filter((r) => r.cached).length;
    const failed = results.filter((r) => r.outcome === "failed").length;
    const skipped = results.filter((r) => r.outcome === "skipped").length;
    process.stderr.write(
      `\n${passed} passed${cached ? ` (${cached} cached)` : ""}, ${failed} failed${skipped ? `, ${skipped} skipped` : ""} (results in ${o.outputDir}/)\n`,
    );
    const reporters = o.reporter.split(",").map((r) => r.trim());
    for (const r of reporters) if (!["list", "junit", "html"].includes(r)) process.stderr.write(`vmrig: unknown reporter ${r} (list, junit, html)\n`);
    if (reporters.includes("junit")) process.stderr.write(`JUnit XML: ${writeJunit(o.outputDir, results)}\n`);
    if (reporters.includes("html")) process.stderr.write(`HTML report: ${writeHtml(o.outputDir, results)}\n`);
    if (ac.signal.aborted) exit = Math.max(exit, EXIT.failed);
    process.exitCode = exit;
  });

async function check(loaded: LoadedTest): Promise<void> {
  const { def } = loaded;
  const typeCheck = !def.skipTypeCheck;
  const lint = !def.skipLint;
  if (!typeCheck && !lint) return;
  const t0 = Date.now();
  reportFindings(loaded.file, await checkTestFile(loaded.file, { typeCheck, lint }));
  process.stderr.write(`${def.name}: ${[typeCheck && "type-checked", lint && "linted"].filter(Boolean).join(" and ")} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

program
  .command("repl")
  .description("interactive mode (NixOS driverInteractive): machines and globals in a REPL, testScript(), machine.shell()")
  .argument("<file>")
  .option("--output-dir <dir>", "where the log and artifacts go", "vmrig-results")
  .addOption(new Option("--accel <accel>", "accelerator").choices(["auto", "kvm", "tcg"]).default("auto"))
  .option("--keep-vm-state", "keep disks between sessions (NixOS -K)", false)
  .action(async (file: string, o: { outputDir: string; accel: "auto" | "kvm" | "tcg"; keepVmState: boolean }) => {
    for (const d of sweepLeftovers()) process.stderr.write(`vmrig: removed ${d}, left behind by a vmrig run that was killed\n`);
    try {
      const loaded = await loadTest(file);
      await check(loaded);
      await startRepl(loaded, o);
    } catch (e) {
      process.exitCode = report(e);
    }
  });

program
  .command("check")
  .description("type-check and lint test files only")
  .argument("<files...>")
  .action(async (files: string[]) => {
    for (const file of files) {
      try {
        reportFindings(file, await checkTestFile(file, { typeCheck: true, lint: true }));
        process.stderr.write(`${file}: ok\n`);
      } catch (e) {
        process.exitCode = Math.max(Number(process.exitCode ?? 0), report(e));
      }
    }
  });

program
  .command("list")
  .description("list tests: name, machines, whether broken, whether a pass is cached")
  .argument("[paths...]", "test files or directories")
  .action(async (paths: string[]) => {
    for (const file of findTests(paths)) {
      try {
        const loaded = await loadTest(file);
        const { def } = loaded;
        const cached = cachedPass(resultKey(loaded, evalNodes(def.nodes, def.defaults)));
        const state = def.meta?.broken ? "broken (skipped)" : cached ? `passed ${cached.passedAt} (cached)` : "not run since it last changed";
        process.stdout.write(`${def.name.padEnd(24)} ${Object.keys(def.nodes).join(",").padEnd(32)} ${state}  ${path.relative(process.cwd(), loaded.file)}\n`);
        if (def.meta?.description) process.stdout.write(`${"".padEnd(25)}${def.meta.description}\n`);
      } catch (e) {
        process.exitCode = Math.max(Number(process.exitCode ?? 0), report(e));
      }
    }
  });

program
  .command("build")
  .description("build the machines' images only")
  .argument("<file>")
  .action(async (file: string) => {
    try {
      const loaded = await loadTest(file);
      const { images } = await buildImages(loaded.def, path.dirname(loaded.file), (m) => process.stderr.write(m + "\n"), loaded.file);
      for (const [n, img] of Object.entries(images)) process.stdout.write(`${n}: ${img.disk}\n`);
    } catch (e) {
      process.exitCode = report(e);
    }
  });

program
  .command("gc")
  .description("remove store entries and cached results no test uses any more, and say how much space that freed")
  .option("--dry-run", "only say what would be removed", false)
  .option("--grace <minutes>", "leave entries younger than this alone (another run may be using them)", (v) => Number(v), 60)
  .action(async (o: { dryRun: boolean; grace: number }) => {
    const r = await gc({ graceMs: o.grace * 60_000, dryRun: o.dryRun });
    const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
    const freed = r.removedEntries.reduce((a, e) => a + e.kib, 0);
    for (const e of r.removedEntries) process.stdout.write(`${o.dryRun ? "would remove" : "removed"} ${e.name} (${mib(e.kib)})\n`);
    for (const f of r.droppedRoots) process.stdout.write(`forgot ${f} (the test file is gone)\n`);
    process.stdout.write(
      `${o.dryRun ? "would free" : "freed"} ${mib(freed)} in ${r.removedEntries.length} store entries and ${r.removedResults} cached results; ` +
        `kept ${r.keptEntries} entries (${mib(r.keptKib)}) for ${r.tests} tests and for builds of the last ${o.grace} min` +
        (r.removedLogs ? `; ${o.dryRun ? "would remove" : "removed"} ${r.removedLogs} failed-build logs older than a week` : "") +
        "\n",
    );
  });

program
  .command("doctor")
  .description("check what vmrig needs on this host, and whether KVM really works")
  .action(async () => {
    process.exitCode = (await doctor()) ? EXIT.ok : EXIT.failed;
  });

program.parseAsync().catch((e: unknown) => {
  process.exitCode = report(e);
});
