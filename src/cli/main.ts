#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from "commander";
import { checkTestFile, reportFindings } from "../runner/check.js";
import { doctor } from "../runner/doctor.js";
import { gc, gib, keepStoreInBudget, storeStatus } from "../runner/gc.js";
import { loadTest } from "../runner/load.js";
import { buildTestImages } from "../runner/run.js";
import { checkBeforeRun, checkPython, endReport, listTests, runSuite } from "../runner/suite.js";
import { mergeBlobs } from "../reporters/blob.js";
import { reportersByName } from "../reporters/index.js";
import { debugOnFailure, startRepl } from "./repl.js";
import { VmrigError, configError, errorMessage } from "../util/errors.js";
import { vmrigVersion } from "../util/version.js";

const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number ≥ 1");
  return n;
}

function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a whole number ≥ 0");
  return n;
}

function report(e: unknown): number {
  process.stderr.write(`\n${errorMessage(e)}\n`);
  return e instanceof VmrigError && e.kind === "config" ? EXIT.usage : EXIT.failed;
}

const print = (line: string) => process.stderr.write(line + "\n");

const program = new Command()
  .name("vmrig")
  .description("NixOS-style integration tests on real Debian VMs, driven from typed TypeScript")
  .version(vmrigVersion())
  .showHelpAfterError()
  // A usage error (unknown option, a bad value) is bad input: exit 2, as SPEC §6 says; --help stays 0.
  .exitOverride((e) => process.exit(e.exitCode === 0 ? EXIT.ok : EXIT.usage));

program
  .command("run")
  .description("build, boot and run tests (default: every *.vmrig.ts under the current directory)")
  .argument("[paths...]", "test files or directories")
  .option("--output-dir <dir>", "where results go", "vmrig-results")
  .addOption(new Option("--accel <accel>", "accelerator").choices(["auto", "kvm", "tcg"]).default("auto"))
  .option("--keep-vm-state", "keep disks between runs (NixOS -K)", false)
  .option("--rerun", "run even if an identical run passed before", false)
  .option("--no-snapshots", "boot every machine instead of restoring its saved first boot")
  .option(
    "--video",
    "record every VM's screen into <output-dir>/<test>/video-<machine>.webm (needs ffmpeg; runs tests even if a pass is cached)",
    false,
  )
  .option(
    "--reporter <list>",
    `list (always), junit: <output-dir>/junit.xml, html: <output-dir>/index.html, blob: <output-dir>/blob.json`,
    "list",
  )
  .option("--global-timeout <seconds>", "override each test's globalTimeout", (v) => Number(v))
  .option(
    "--jobs <n>",
    "tests run side by side (each waits until the host has memory for its machines)",
    positiveInt,
    1,
  )
  .option("--shard <i/n>", "run only the i-th of n parts of the suite (for several CI machines)")
  .option("--debug", "on a failure keep the machines up and open a REPL there (the error and every machine in scope)")
  .option("--retries <n>", "run a failed test again up to n times; a pass on a retry is reported as flaky", count, 0)
  .action(
    async (
      paths: string[],
      o: {
        outputDir: string;
        accel: "auto" | "kvm" | "tcg";
        keepVmState: boolean;
        snapshots: boolean;
        video: boolean;
        rerun: boolean;
        reporter: string;
        globalTimeout?: number;
        jobs: number;
        shard?: string;
        retries: number;
        debug?: boolean;
      },
    ) => {
      const ac = new AbortController();
      let interrupts = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        interrupts++;
        print(
          `\nvmrig: ${sig}: stopping machines and cleaning up${interrupts > 1 ? " (again: still cleaning up)" : ""}`,
        );
        ac.abort(sig);
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      process.on("SIGHUP", onSignal); // the terminal went away: clean up all the same
      try {
        const { reporter, debug, ...rest } = o;
        if (debug && o.jobs > 1)
          throw configError("--debug needs --jobs 1", { hint: "a REPL takes the terminal: debug one test at a time" });
        const outcome = await runSuite(paths, {
          ...rest,
          // a cached pass has no video to show
          rerun: o.rerun || o.video,
          ...(debug ? debugOnFailure() : {}),
          signal: ac.signal,
          reporters: reportersByName(reporter, o.shard),
          print,
        });
        process.exitCode = outcome.exitCode;
      } catch (e) {
        process.exitCode = report(e);
      }
    },
  );

program
  .command("merge-reports")
  .description("one report from the blob results (--reporter blob) of several shards' output folders")
  .argument("<dirs...>", "the shards' output folders")
  .option("--output-dir <dir>", "where the merged results and reports go", "vmrig-results-merged")
  .option("--reporter <list>", "list (always), junit, html, blob", "list,junit,html")
  .action((dirs: string[], o: { outputDir: string; reporter: string }) => {
    try {
      const reporters = reportersByName(o.reporter);
      const t0 = Date.now();
      const results = mergeBlobs(dirs, o.outputDir);
      const s = endReport(results, o.outputDir, reporters, print);
      print(
        `merged ${results.length} results from ${dirs.length} folders in ${((Date.now() - t0) / 1000).toFixed(2)} s`,
      );
      process.exitCode = s.failed > 0 ? EXIT.failed : EXIT.ok;
    } catch (e) {
      process.exitCode = report(e);
    }
  });

program
  .command("repl")
  .description(
    "interactive mode (NixOS driverInteractive): machines and globals in a REPL, testScript(), machine.shell()",
  )
  .argument("<file>")
  .option("--output-dir <dir>", "where the log and artifacts go", "vmrig-results")
  .addOption(new Option("--accel <accel>", "accelerator").choices(["auto", "kvm", "tcg"]).default("auto"))
  .option("--keep-vm-state", "keep disks between sessions (NixOS -K)", false)
  .action(async (file: string, o: { outputDir: string; accel: "auto" | "kvm" | "tcg"; keepVmState: boolean }) => {
    try {
      const loaded = await loadTest(file);
      await checkBeforeRun(loaded, print);
      await startRepl(loaded, o);
    } catch (e) {
      process.exitCode = report(e);
    }
  });

program
  .command("check")
  .description("type-check and lint test files only (a Python testScript: compile it and run pyflakes)")
  .argument("<files...>")
  .action(async (files: string[]) => {
    for (const file of files) {
      try {
        reportFindings(file, await checkTestFile(file, { typeCheck: true, lint: true }));
        await checkPython(await loadTest(file)); // a Python testScript: compiled, and pyflakes
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
    try {
      process.exitCode = await listTests(paths, (l) => process.stdout.write(l + "\n"), print);
    } catch (e) {
      process.exitCode = report(e);
    }
  });

program
  .command("build")
  .description("build the machines' images only")
  .argument("<file>")
  .action(async (file: string) => {
    try {
      const loaded = await loadTest(file);
      const images = await buildTestImages(loaded, (m) => process.stderr.write(m + "\n"));
      for (const [n, root] of Object.entries(images)) process.stdout.write(`${n}: ${root}\n`);
    } catch (e) {
      process.exitCode = report(e);
    }
  });

program
  .command("gc")
  .description("remove store entries and cached results no test uses any more, and say how much space that freed")
  .option("--dry-run", "only say what would be removed", false)
  .option(
    "--grace <minutes>",
    "leave entries younger than this alone (another run may be using them)",
    (v) => Number(v),
    60,
  )
  .action(async (o: { dryRun: boolean; grace: number }) => {
    const r = await gc({ graceMs: o.grace * 60_000, dryRun: o.dryRun });
    const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
    const freed = r.removedEntries.reduce((a, e) => a + e.kib, 0);
    for (const e of r.removedEntries)
      process.stdout.write(`${o.dryRun ? "would remove" : "removed"} ${e.name} (${mib(e.kib)})\n`);
    for (const f of r.droppedRoots) process.stdout.write(`forgot ${f} (the test file is gone)\n`);
    process.stdout.write(
      `${o.dryRun ? "would free" : "freed"} ${mib(freed)} in ${r.removedEntries.length} store entries and ${r.removedResults} cached results; ` +
        `kept ${r.keptEntries} entries (${mib(r.keptKib)}) for ${r.tests} tests and for builds of the last ${o.grace} min` +
        (r.removedLogs
          ? `; ${o.dryRun ? "would remove" : "removed"} ${r.removedLogs} failed-build logs older than a week`
          : "") +
        "\n",
    );
    const store = o.dryRun ? await storeStatus() : await keepStoreInBudget((l) => process.stdout.write(l + "\n"));
    if (store)
      process.stdout.write(
        `store: ${gib(store.totalKib)} in ${store.entries} entries; budget ${gib(store.budget.kib)} (${store.budget.from})\n`,
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
