import fs from "node:fs";
import path from "node:path";
import type { Machine, Terminal } from "../machine/machine.js";

export type { Terminal };
import { createTopology, type Accel, type Topology } from "./topology.js";
import { VmrigError, configError, errorMessage } from "../util/errors.js";
import { ocrAvailable } from "../machine/ocr.js";
import { within } from "../util/proc.js";
import { Logger } from "./logger.js";
import type { LoadedTest } from "./load.js";
import type { TestContext } from "./test.js";
import type { Mark } from "../util/log.js";
import { runPythonScript } from "./python.js";
import { checkConditions, makeContext, type ActiveCondition } from "./globals.js";

export interface RunOptions {
  outputDir: string;
  accel: "auto" | Accel;
  keepVmState: boolean;
  /** restore boot snapshots (SPEC §7); default true */
  snapshots?: boolean;
  /** seconds; overrides the test's globalTimeout */
  globalTimeout?: number;
  /** where live output goes (default stderr) */
  print?: (line: string) => void;
  signal?: AbortSignal;
  /** the terminal Machine.shell() uses */
  terminal?: () => Terminal;
  /** `--debug`: called on a failure while the machines are still up (they stop when it resolves) */
  onFailure?: (f: DebugFailure) => Promise<void>;
  /** a retry's number (1, 2, …): its results go to `<name>-retry<n>/`, so no attempt's artifacts are lost */
  attempt?: number;
}

export interface DebugFailure {
  name: string;
  error: Error;
  /** the script's context: every machine and global */
  ctx: TestContext;
  machines: string[];
}

export type Outcome = "passed" | "failed" | "skipped";

export interface SubtestResult {
  name: string;
  outcome: "passed" | "failed";
  durationMs: number;
  /** when it began, ms after the test did (for the timeline) */
  startMs?: number;
  error?: string;
}

export interface TestResult {
  name: string;
  file: string;
  outcome: Outcome;
  /** a pass taken from the result cache */
  cached?: boolean;
  /** set when the failure is bad input (exit 2) */
  configError: boolean;
  durationMs: number;
  error?: Error;
  resultDir: string;
  subtests: SubtestResult[];
  bootMs: Record<string, number>;
  /** faults set and cleared, machines started and stopped, ms after the test began (the HTML timeline) */
  timeline?: Mark[];
  /** `--retries`: the attempts that failed before this one, oldest first (their folders are kept) */
  failedAttempts?: FailedAttempt[];
}

export interface FailedAttempt {
  resultDir: string;
  error: string;
  durationMs: number;
}

/** Passed, but only after failing: `--retries` ran it again. */
export const isFlaky = (r: TestResult): boolean => r.outcome === "passed" && !!r.failedAttempts?.length;

/** A test's result before it has run: passed until something fails. */
export function newResult(loaded: LoadedTest, resultDir: string): TestResult {
  return {
    name: loaded.def.name,
    file: loaded.file,
    outcome: "passed",
    configError: false,
    durationMs: 0,
    resultDir,
    subtests: [],
    bootMs: {},
  };
}

export async function runTest(loaded: LoadedTest, opts: RunOptions): Promise<TestResult> {
  const { def } = loaded;
  const resultDir = path.resolve(opts.outputDir, opts.attempt ? `${def.name}-retry${opts.attempt}` : def.name);
  fs.rmSync(resultDir, { recursive: true, force: true });
  fs.mkdirSync(resultDir, { recursive: true });
  const logger = new Logger(path.join(resultDir, "log.txt"), opts.print);
  const started = Date.now();
  const result = newResult(loaded, resultDir);
  if (def.meta?.broken) {
    logger.log(`${def.name}: skipped (meta.broken)`);
    result.outcome = "skipped";
    await logger.close();
    return result;
  }

  let session: Session | undefined;
  try {
    session = await openSession(loaded, opts, logger, result);
    const { ctx } = session;
    const timeout = Math.min(opts.globalTimeout ?? def.globalTimeout ?? 3600, def.meta?.timeout ?? Infinity);
    await logger.nested(`running ${def.name}'s test script`, () =>
      runScript(loaded, ctx, logger, timeout, opts.signal),
    );
    if (result.subtests.some((s) => s.outcome === "failed")) {
      throw new VmrigError(`${result.subtests.filter((s) => s.outcome === "failed").length} subtest(s) failed`);
    }
  } catch (e) {
    result.outcome = "failed";
    result.error = e instanceof Error ? e : new Error(String(e));
    result.configError = e instanceof VmrigError && e.kind === "config";
    logger.log(`\n${def.name} FAILED:\n${errorMessage(e)}`);
    await collectFailureArtifacts(session?.topology.machines ?? [], resultDir, logger);
    if (opts.onFailure && session && !result.configError && !opts.signal?.aborted) {
      await opts
        .onFailure({
          name: def.name,
          error: result.error,
          ctx: session.ctx,
          machines: session.topology.machines.map((m) => m.name),
        })
        .catch((err: unknown) => logger.log(`--debug: ${errorMessage(err)}`));
    }
  } finally {
    await session?.close();
    result.durationMs = Date.now() - started;
    if (logger.marks.length) result.timeline = logger.marks;
    if (result.outcome === "passed") logger.log(`${def.name} passed in ${(result.durationMs / 1000).toFixed(1)} s`);
    await logger.close();
    fs.writeFileSync(
      path.join(resultDir, "result.json"),
      JSON.stringify({ ...result, error: result.error ? errorMessage(result.error) : undefined }, null, 2),
    );
  }
  return result;
}

/** A test's machines, running, and the script's context over them. */
export interface Session {
  topology: Topology;
  ctx: TestContext;
  /** stop every machine and switch; records boot times into the result */
  close(): Promise<void>;
}

/** Build the images, bring up the networks and give the script its context (machines boot on first use). */
export async function openSession(
  loaded: LoadedTest,
  opts: Pick<RunOptions, "accel" | "keepVmState" | "terminal" | "snapshots"> & { interactive?: boolean },
  logger: Logger,
  result: TestResult,
): Promise<Session> {
  const { def } = loaded;
  await checkOcr(loaded);
  const conditions = new Set<ActiveCondition>();
  const topology = await createTopology(def, {
    logger,
    resultDir: result.resultDir,
    sourceDir: path.dirname(loaded.file),
    testFile: loaded.file,
    accel: opts.accel,
    keepVmState: opts.keepVmState,
    snapshots: opts.snapshots ?? true,
    beforeCommand: () => checkConditions(conditions),
    ...(opts.terminal ? { terminal: opts.terminal } : {}),
    ...(opts.interactive ? { interactive: true } : {}),
    enableOCR: def.enableOCR ?? false,
  });
  const { machines, configs, vlans, accel } = topology;
  const ctx = makeContext(machines, configs, logger, result, {
    conditions,
    vlans,
    driver: { testName: def.name, resultDir: result.resultDir, accel },
    stateDir: topology.stateDir,
  });
  return {
    topology,
    ctx,
    close: async () => {
      for (const m of machines) if (m.bootMs !== undefined) result.bootMs[m.name] = m.bootMs;
      await topology.close();
    },
  };
}

/** OCR is asked for but tesseract is missing, or used without being asked for: both are bad input, found before anything is built. */
async function checkOcr(loaded: LoadedTest): Promise<void> {
  const { def } = loaded;
  if (def.enableOCR) {
    const missing = await ocrAvailable();
    if (missing)
      throw configError(`test ${def.name} sets enableOCR, but ${missing}`, {
        hint: "`vmrig doctor` lists what the host is missing",
      });
  } else if (loaded.ocrCalls.length > 0) {
    throw configError(`test ${def.name} calls ${loaded.ocrCalls.join(", ")} without enableOCR`, {
      hint: "set `enableOCR: true` in defineTest (NixOS: enableOCR = true)",
    });
  }
}

class Deadline extends VmrigError {}

/** The script, TypeScript or Python, under the test's deadline and the CLI's signal. */
export async function runScript(
  loaded: LoadedTest,
  ctx: TestContext,
  logger: Logger,
  timeout: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { def } = loaded;
  if (typeof def.testScript !== "string") return withDeadline(def.testScript(ctx), timeout, signal);
  // A Python script is a process of its own: it ends with the race, whoever wins it.
  const ended = new AbortController();
  try {
    return await withDeadline(
      runPythonScript(def.testScript, loaded.file, ctx, logger, ctx.driver.resultDir, ended.signal),
      timeout,
      signal,
    );
  } finally {
    ended.abort();
  }
}

async function withDeadline<T>(p: Promise<T>, seconds: number, signal?: AbortSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const limits = new Promise<never>((_, reject) => {
    // (Node fires a timer of more than 2^31 ms at once: no deadline then, as in the REPL)
    if (seconds * 1000 < 2 ** 31)
      timer = setTimeout(
        () =>
          reject(
            new Deadline(`the test ran past its global timeout of ${seconds} s and was stopped`, {
              hint: "raise globalTimeout (or meta.timeout) if the test is just slow",
            }),
          ),
        seconds * 1000,
      );
    onAbort = () => reject(new VmrigError(`interrupted (${String(signal?.reason ?? "signal")})`));
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([p, limits]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}

/** On failure: a screenshot, the journal's tail and X's log (graphical machines) of every machine still up. */
async function collectFailureArtifacts(machines: Machine[], resultDir: string, logger: Logger): Promise<void> {
  for (const m of machines) {
    if (!m.pid) continue;
    try {
      if (!(await within(m.isUp(), 3000))) continue;
      await m.screenshot(path.join(resultDir, `failure-${m.name}.png`));
      const j = await m.execute("journalctl --no-pager -n 100 2>&1 || true", { timeout: 20 });
      fs.writeFileSync(path.join(resultDir, `failure-${m.name}-journal.txt`), j.stdout);
      const x = await m.execute("cat /var/log/Xorg.0.log", { timeout: 20 });
      if (x.status === 0) fs.writeFileSync(path.join(resultDir, `failure-${m.name}-Xorg.0.log`), x.stdout);
    } catch (e) {
      logger.detail(`could not collect failure artifacts: ${errorMessage(e)}`, m.name);
    }
  }
}
