import fs from "node:fs";
import path from "node:path";
import type { SubtestResult, Terminal, Video } from "../session/context.js";
import { Logger } from "../session/logger.js";
import { startMachines, type Accel, type Rig, type StartOptions } from "../session/start.js";
import { buildImages } from "../session/topology.js";
import { VmrigError, configError, errorMessage } from "../util/errors.js";
import type { Call, Mark } from "../util/log.js";
import type { LoadedTest } from "./load.js";
import { runPythonScript } from "./python.js";
import { pythonScriptOf, type TestContext } from "./test.js";

export type { Accel, SubtestResult, Terminal };
export { Logger };

export interface RunOptions {
  outputDir: string;
  accel: "auto" | Accel;
  keepVmState: boolean;
  /** restore boot snapshots (SPEC §7); default true */
  snapshots?: boolean;
  /** `--video`: record every VM's screen */
  video?: boolean;
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
  /** the machine calls, ms after the test began (the HTML report seeks the video to them) */
  calls?: Call[];
  /** `--video`: each recorded machine's video (its file relative to the result folder) */
  videos?: Video[];
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

  let rig: Rig | undefined;
  try {
    rig = await startTestMachines(loaded, opts, logger, resultDir);
    result.subtests = rig.subtests;
    const timeout = Math.min(opts.globalTimeout ?? def.globalTimeout ?? 3600, def.meta?.timeout ?? Infinity);
    const ctx = rig;
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
    await rig?.saveFailureArtifacts();
    if (opts.onFailure && rig && !result.configError && !opts.signal?.aborted) {
      await opts
        .onFailure({ name: def.name, error: result.error, ctx: rig, machines: rig.machines.map((m) => m.name) })
        .catch((err: unknown) => logger.log(`--debug: ${errorMessage(err)}`));
    }
  } finally {
    for (const m of rig?.machines ?? []) if (m.bootMs !== undefined) result.bootMs[m.name] = m.bootMs;
    await rig?.close();
    if (rig?.videos.length) result.videos = rig.videos.map((v) => ({ ...v, file: path.relative(resultDir, v.file) }));
    if (logger.calls.length) result.calls = logger.calls;
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

/**
 * A test's machines through the library's one start function (SPEC §12), on the run's
 * log: built, networks up, each machine booting on its first use.
 */
export async function startTestMachines(
  loaded: LoadedTest,
  opts: Pick<RunOptions, "accel" | "keepVmState" | "terminal" | "snapshots" | "signal" | "video"> & {
    interactive?: boolean;
  },
  logger: Logger,
  resultDir: string,
): Promise<Rig> {
  const { def } = loaded;
  checkOcrCalls(loaded);
  const start: StartOptions = {
    name: def.name,
    resultDir,
    start: "on-use",
    logger,
    testFile: loaded.file,
    sourceDir: path.dirname(loaded.file),
    accel: opts.accel,
    keepVmState: opts.keepVmState,
    snapshots: opts.snapshots ?? true,
    enableOCR: def.enableOCR ?? false,
    video: opts.video ?? false,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.terminal ? { terminal: opts.terminal } : {}),
    ...(opts.interactive ? { interactive: true } : {}),
  };
  return startMachines(def, start);
}

/** `vmrig build`: a test's images only, their store paths by machine. */
export async function buildTestImages(
  loaded: LoadedTest,
  progress: (line: string) => void,
): Promise<Record<string, string>> {
  const { images } = await buildImages(loaded.def, path.dirname(loaded.file), progress, loaded.file);
  return Object.fromEntries(Object.entries(images).map(([n, img]) => [n, img.root]));
}

/** OCR used without being asked for: bad input, found before anything is built. */
function checkOcrCalls(loaded: LoadedTest): void {
  const { def } = loaded;
  if (!def.enableOCR && loaded.ocrCalls.length > 0) {
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
  const python = pythonScriptOf(def, () => ctx.nodes);
  if (python === undefined)
    return withDeadline((def.testScript as (c: TestContext) => Promise<void>)(ctx), timeout, signal);
  // A Python script is a process of its own: it ends with the race, whoever wins it.
  const ended = new AbortController();
  try {
    return await withDeadline(
      runPythonScript(python, loaded.file, ctx, logger, ctx.driver.resultDir, { ended: ended.signal }),
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
