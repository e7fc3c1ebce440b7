import { keepStoreInBudget } from "./gc.js";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { EvaluatedConfig } from "../config/eval.js";
import { sweepLeftoversOnce } from "../session/leftovers.js";
import { evaluateMachines } from "../session/topology.js";
import { cachedPass, recordPass, resultKey } from "./cache.js";
import { checkOnce } from "./check.js";
import { checkPythonScript } from "./python.js";
import { machineNames, nodesOf, pythonScriptOf } from "./test.js";
import { loadTest, type LoadedTest } from "./load.js";
import type { Reporter, SuiteSummary } from "./reporter.js";
import { isFlaky, newResult, runTest, type FailedAttempt, type RunOptions, type TestResult } from "./run.js";
import { CONTAINER_MIB, MemoryBudget, QEMU_OVERHEAD_MIB, shard } from "./schedule.js";
import { VmrigError, configError, errorMessage } from "../util/errors.js";

/** `vmrig run`'s test files: the paths given (files as they are, directories searched for *.vmrig.ts). */
export function findTests(args: string[]): string[] {
  const roots = args.length ? args : ["."];
  const out: string[] = [];
  const walk = (p: string) => {
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (!st) throw configError(`no such file or directory: ${p}`);
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

/** A Python script, checked every time (compile, and pyflakes unless skipLint: a fraction of a second); findings are a configuration error. */
export async function checkPython(loaded: LoadedTest): Promise<void> {
  const { def } = loaded;
  const python = pythonScriptOf(def, () => nodesOf(def));
  if (python !== undefined) await checkPythonScript(loaded.file, python, def);
}

/** Type-check and lint a test file unless it opts out; findings are a configuration error. */
export async function checkBeforeRun(loaded: LoadedTest, print: (line: string) => void): Promise<void> {
  const { def } = loaded;
  const typeCheck = !def.skipTypeCheck;
  const lint = !def.skipLint;
  await checkPython(loaded);
  if (!typeCheck && !lint) return;
  const t0 = Date.now();
  const what = [typeCheck && "type-checked", lint && "linted"].filter(Boolean).join(" and ");
  const cached = await checkOnce(loaded.file, loaded.sources, { typeCheck, lint });
  print(
    `${def.name}: ${cached ? `${what} (unchanged since it last passed)` : `${what} in ${((Date.now() - t0) / 1000).toFixed(1)} s`}`,
  );
}

export interface SuiteOptions extends Omit<RunOptions, "print"> {
  rerun: boolean;
  jobs: number;
  /** run a failed test again up to this many times (not a configuration error); a later pass is "flaky" */
  retries?: number;
  shard?: string | undefined;
  reporters: Reporter[];
  /** where the suite's own lines go (default stderr) */
  print?: (line: string) => void;
}

export interface SuiteOutcome {
  results: TestResult[];
  /** 0 all passed, 1 a test failed, 2 bad input (SPEC §6) */
  exitCode: 0 | 1 | 2;
}

/** A failure outside any test's run (loading, checking): the exit code it stands for, reported. */
function failureCode(e: unknown, print: (l: string) => void): 1 | 2 {
  print(`\n${errorMessage(e)}`);
  return e instanceof VmrigError && e.kind === "config" ? 2 : 1;
}

/**
 * A suite run, as titled steps: sweep what killed runs left, pick this shard's files, then
 * per test (up to `jobs` at once, each waiting for memory for its machines): load, look up
 * the result cache, check, run, record; then the reporters. Failures become results and an
 * exit code, never exceptions.
 */
export async function runSuite(paths: string[], o: SuiteOptions): Promise<SuiteOutcome> {
  const print = o.print ?? ((l: string) => process.stderr.write(l + "\n"));
  // (startMachines sweeps too, once per process: a run with no test to start must still sweep)
  await sweepLeftoversOnce(print);
  const results: TestResult[] = [];
  let exit: 0 | 1 | 2 = 0;
  const worse = (c: 0 | 1 | 2) => (exit = Math.max(exit, c) as 0 | 1 | 2);
  const files = shard(findTests(paths), o.shard);
  const jobs = Math.max(1, Math.floor(o.jobs));
  const memory = new MemoryBudget(Math.floor(os.totalmem() / 1024 / 1024) - 1024);

  const runOne = async (file: string): Promise<void> => {
    if (o.signal?.aborted) return;
    let key: string;
    let loaded: LoadedTest;
    let configs: Record<string, EvaluatedConfig>;
    try {
      loaded = await loadTest(file);
      configs = evaluateMachines(loaded.def);
      key = resultKey(loaded, configs);
    } catch (e) {
      worse(failureCode(e, print));
      return;
    }
    const hit = o.rerun || o.keepVmState ? undefined : cachedPass(key);
    if (hit) {
      print(
        `${loaded.def.name}: cached (passed ${hit.passedAt}, nothing it depends on changed; --rerun runs it anyway)`,
      );
      const cached: TestResult = { ...newResult(loaded, ""), name: hit.name, cached: true };
      results.push(cached);
      for (const r of o.reporters) r.onTestEnd?.(cached);
      return;
    }
    // a VM takes its memory and QEMU's; a container only what its processes use
    const containers = new Set(Object.keys(loaded.def.containers ?? {}));
    const needMiB = Object.entries(configs).reduce(
      (a, [name, c]) => a + (containers.has(name) ? CONTAINER_MIB : c.virtualisation.memorySize + QEMU_OVERHEAD_MIB),
      0,
    );
    const release = await memory.take(needMiB);
    let result: TestResult;
    try {
      if (o.signal?.aborted) return;
      const name = loaded.def.name;
      const testPrint = jobs > 1 ? (l: string) => print(`[${name}] ${l}`) : print;
      if (!loaded.def.meta?.broken) await checkBeforeRun(loaded, testPrint);
      result = await runTest(loaded, { ...o, print: testPrint });
      const failed: FailedAttempt[] = [];
      while (
        result.outcome === "failed" &&
        !result.configError &&
        failed.length < (o.retries ?? 0) &&
        !o.signal?.aborted
      ) {
        failed.push({ resultDir: result.resultDir, error: errorMessage(result.error), durationMs: result.durationMs });
        testPrint(
          `${name}: failed (${errorMessage(result.error).split("\n")[0]}); retry ${failed.length} of ${o.retries} (this attempt's results: ${path.relative(process.cwd(), result.resultDir) || "."}/)`,
        );
        result = await runTest(loaded, { ...o, print: testPrint, attempt: failed.length });
      }
      if (failed.length) result.failedAttempts = failed;
      if (isFlaky(result)) testPrint(`${name}: flaky: passed on retry ${failed.length} after failing`);
    } catch (e) {
      worse(failureCode(e, print));
      return;
    } finally {
      release();
    }
    // A flaky pass is not cached: the next run should see whether it fails again.
    if (result.outcome === "passed" && !isFlaky(result))
      recordPass(key, {
        name: result.name,
        file: result.file,
        passedAt: new Date().toISOString(),
        durationMs: result.durationMs,
      });
    results.push(result);
    for (const r of o.reporters) r.onTestEnd?.(result);
    if (result.outcome === "failed") {
      worse(result.configError ? 2 : 1);
      if (jobs > 1) print(`\n${result.name} FAILED:\n${errorMessage(result.error)}`);
    }
  };

  const queue = [...files];
  await Promise.all(
    Array.from({ length: Math.min(jobs, queue.length) }, async () => {
      for (let f = queue.shift(); f !== undefined; f = queue.shift()) await runOne(f);
    }),
  );
  const summary = endReport(results, o.outputDir, o.reporters, print, o.signal?.aborted ?? false);
  if (summary.interrupted) worse(1);
  else await keepStoreInBudget(print);
  return { results, exitCode: exit };
}

/** Count the outcomes and tell every reporter the run is over (a suite run, or `vmrig merge-reports`). */
export function endReport(
  results: TestResult[],
  outputDir: string,
  reporters: Reporter[],
  print: (l: string) => void,
  interrupted = false,
): SuiteSummary {
  const summary: SuiteSummary = {
    outputDir,
    passed: results.filter((r) => r.outcome === "passed").length,
    cached: results.filter((r) => r.cached).length,
    failed: results.filter((r) => r.outcome === "failed").length,
    skipped: results.filter((r) => r.outcome === "skipped").length,
    flaky: results.filter(isFlaky).length,
    interrupted,
  };
  for (const r of reporters) {
    const said = r.onEnd?.(results, summary);
    if (said) print(said);
  }
  return summary;
}

/** One line per test for `vmrig list`: name, machines, broken or cached, file. */
export async function listTests(
  paths: string[],
  out: (line: string) => void,
  print: (line: string) => void,
): Promise<0 | 1 | 2> {
  let exit: 0 | 1 | 2 = 0;
  for (const file of findTests(paths)) {
    try {
      const loaded = await loadTest(file);
      const { def } = loaded;
      const cached = cachedPass(resultKey(loaded, evaluateMachines(def)));
      const state = def.meta?.broken
        ? "broken (skipped)"
        : cached
          ? `passed ${cached.passedAt} (cached)`
          : "not run since it last changed";
      out(
        `${def.name.padEnd(24)} ${machineNames(def).join(",").padEnd(32)} ${state}  ${path.relative(process.cwd(), loaded.file)}`,
      );
      if (def.meta?.description) out(`${"".padEnd(25)}${def.meta.description}`);
    } catch (e) {
      exit = Math.max(exit, failureCode(e, print)) as 0 | 1 | 2;
    }
  }
  return exit;
}
