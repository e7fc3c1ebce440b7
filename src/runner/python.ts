import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import type { Machine } from "../session/context.js";
import { VmrigError, configError, errorMessage } from "../util/errors.js";
import { run, spawnOwned } from "../util/proc.js";
import type { Logger } from "../session/logger.js";
import { PyArgs, PYTHON_METHODS } from "./python-api.js";
import { machineNames, type TestContext } from "./test.js";

// NixOS test scripts in Python (SPEC §11): Debian's python3 runs python/vmrig_nixos.py,
// which sends every machine call here; the machines are the same TypeScript ones.

const RUNTIME = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "python", "vmrig_nixos.py");
/** Debian's python3 (where its pyflakes is), not whatever `python3` comes first on PATH. */
const PYTHON = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

/** Names a script may use without defining them: NixOS's globals, and one per machine. */
export const PYTHON_GLOBALS = [
  "start_all",
  "join_all",
  "subtest",
  "retry",
  "polling_condition",
  "serial_stdout_on",
  "serial_stdout_off",
  "machines",
  "vlans",
  "log",
  "driver",
  "t",
  "Machine",
] as const;

/** Where a script's text sits in its test file: the line its first line is on (1 if not found). */
export function scriptFirstLine(testFileText: string, script: string): number {
  const lines = script.split("\n");
  const k = lines.findIndex((l) => l.trim() !== "");
  if (k < 0) return 1;
  const at = testFileText.split("\n").findIndex((l) => l.trim() === lines[k]!.trim() || l.includes(lines[k]!.trim()));
  return at < 0 ? 1 : at + 1 - k;
}

/** The script as Python sees it: dedented (a template literal keeps the file's indentation, as a Nix string would not). */
export function dedent(script: string): string {
  const lines = script.split("\n");
  const indents = lines.filter((l) => l.trim()).map((l) => /^[ \t]*/.exec(l)![0].length);
  const cut = indents.length ? Math.min(...indents) : 0;
  return lines.map((l) => l.slice(Math.min(cut, /^[ \t]*/.exec(l)![0].length))).join("\n");
}

/**
 * Before anything boots: the script must compile, and (unless `skipLint`) pyflakes must
 * find nothing — an undefined name is a typo'd machine or global. Findings name the line
 * of the test file.
 */
export async function checkPythonScript(
  file: string,
  text: string,
  def: {
    nodes?: object | undefined;
    containers?: object | undefined;
    skipLint?: boolean | undefined;
  },
): Promise<void> {
  const script = dedent(text);
  const first = scriptFirstLine(fs.readFileSync(file, "utf8"), text);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-pycheck-"));
  try {
    const py = path.join(dir, "testScript.py");
    fs.writeFileSync(py, script);
    const at = (line: number) => `${path.relative(process.cwd(), file) || file}:${line + first - 1}`;
    const findings: string[] = [];
    const compiled = await run(PYTHON, [
      "-c",
      "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')",
      py,
    ]).catch((e: unknown) => e as VmrigError);
    if (compiled instanceof VmrigError) {
      const out = compiled.output ?? "";
      const line = Number(/testScript\.py", line (\d+)/.exec(out)?.[1] ?? 1);
      const what = out.trim().split("\n").filter(Boolean).pop() ?? "syntax error";
      findings.push(`${at(line)}: ${what}`);
    } else if (!def.skipLint) {
      const machines = machineNames(def);
      const names = [...PYTHON_GLOBALS, ...machines.map((n) => n.replace(/-/g, "_"))];
      if (machines.length === 1) names.push("machine");
      const r = await run(PYTHON, ["-m", "pyflakes", py], {
        env: { ...process.env, PYFLAKES_BUILTINS: names.join(",") },
        okStatus: [1],
        timeoutS: 60,
      }).catch((e: unknown) => ({ output: e instanceof VmrigError ? (e.output ?? "") : "" }));
      if (/No module named pyflakes/.test(r.output))
        throw configError("the Python test script cannot be linted: pyflakes is not installed", {
          hint: "apt install python3-pyflakes (scripts/setup.sh does), or set skipLint: true",
        });
      for (const l of r.output.split("\n")) {
        const m = /^.*?testScript\.py:(\d+):(?:\d+:)? (.*)$/.exec(l);
        if (m) findings.push(`${at(Number(m[1]))}: ${m[2]}`);
      }
    }
    if (findings.length)
      throw configError(
        `the Python test script has ${findings.length === 1 ? "a problem" : `${findings.length} problems`}:\n  ${findings.join("\n  ")}`,
        {
          hint:
            "names a script may use: the machines, machine (with one machine), and NixOS's globals " +
            PYTHON_GLOBALS.join(", "),
        },
      );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface Failure {
  type: string;
  message: string;
  line: number | null;
  source: string | null;
  traceback: string;
  ref: number | null;
}

/** Run a Python test script against the script context's machines; resolves when it passes, throws its failure. */
export async function runPythonScript(
  script: string,
  testFile: string,
  ctx: TestContext,
  logger: Logger,
  resultDir: string,
  /** aborted when the run no longer waits for the script (deadline, Ctrl-C): the process is killed */
  ended?: AbortSignal,
): Promise<void> {
  const first = scriptFirstLine(fs.readFileSync(testFile, "utf8"), script);
  const py = path.join(resultDir, "testScript.py");
  fs.writeFileSync(py, dedent(script));
  const shownFile = path.relative(process.cwd(), testFile) || testFile;
  const byName = new Map<string, Machine>(ctx.machines.map((m) => [m.name, m]));
  const child = spawnOwned(PYTHON, ["-u", RUNTIME, py, shownFile, String(first), JSON.stringify([...byName.keys()])], {
    stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"],
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
  });
  ended?.addEventListener("abort", () => child.kill("SIGKILL"), { once: true });
  const answers = child.stdio[4] as NodeJS.WritableStream;
  const requests = child.stdio[3] as NodeJS.ReadableStream;
  for (const [stream, tag] of [
    [child.stdout!, "print"],
    [child.stderr!, "stderr"],
  ] as const) {
    readline.createInterface({ input: stream }).on("line", (l) => (tag === "print" ? logger.log(l) : logger.detail(l)));
  }
  const errors = new Map<number, unknown>();
  let failure: Failure | undefined;
  /** open nested log steps and subtests: each waits for its end request */
  const open: { end: (error?: string) => void }[] = [];
  const block = (start: (body: () => Promise<void>) => Promise<unknown>) => {
    let end!: (error?: string) => void;
    // bounded: ended by the script's end request, or by the script's end (every open block is ended then)
    const body = new Promise<void>((resolve, reject) => {
      end = (error) => (error ? reject(new Error(error)) : resolve());
    });
    start(() => body).catch(() => undefined);
    open.push({ end });
  };

  const handle = async (req: {
    id: number;
    op: string;
    location: string | null;
    [k: string]: unknown;
  }): Promise<unknown> => {
    switch (req.op) {
      case "hello":
        return { testName: ctx.driver.testName, resultDir: ctx.driver.resultDir, vlans: ctx.vlans.map((v) => v.vlan) };
      case "machine": {
        const m = byName.get(String(req.machine));
        const method = String(req.method);
        const impl = PYTHON_METHODS[method];
        if (!m) throw new VmrigError(`there is no machine called ${String(req.machine)}`, { call: method });
        if (!impl)
          throw new VmrigError(`Machine has no method ${method}()`, {
            machine: m.name,
            call: `${m.name}.${method}()`,
            hint: `the NixOS driver's methods vmrig has: ${Object.keys(PYTHON_METHODS).join(", ")}`,
          });
        return impl(
          m,
          new PyArgs(method, (req.args as unknown[]) ?? [], (req.kwargs as Record<string, unknown>) ?? {}),
        );
      }
      case "start_all":
        return ctx.startAll();
      case "join_all":
        return ctx.joinAll();
      case "serial_stdout":
        return req.on ? ctx.serialStdoutOn() : ctx.serialStdoutOff();
      case "log":
        return ctx.log(String(req.message));
      case "nested_begin":
        return block((body) => logger.nested(String(req.message), body));
      case "subtest_begin":
        return block((body) => ctx.subtest(String(req.name), body));
      case "nested_end":
      case "subtest_end":
        open.pop()?.end(req.error as string | undefined);
        return undefined;
      case "failed":
        failure = req.failure as Failure;
        return undefined;
      default:
        throw new Error(`unknown request ${req.op}`);
    }
  };

  const served = (async () => {
    for await (const line of readline.createInterface({ input: requests })) {
      const req = JSON.parse(line) as { id: number; op: string; location: string | null };
      let answer: object;
      try {
        answer = { id: req.id, result: (await handle(req)) ?? null };
      } catch (e) {
        if (e instanceof VmrigError && req.location) e.location = req.location;
        errors.set(req.id, e);
        answer = { id: req.id, error: errorMessage(e), ref: req.id };
      }
      answers.write(JSON.stringify(answer) + "\n");
    }
  })();
  // bounded: the run's deadline and Ctrl-C kill the script (`ended` above)
  const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  await served.catch(() => undefined);
  for (const o of open.reverse()) o.end("the script ended inside it");
  if (code === 0) return;
  if (failure) {
    const location = failure.line ? `${shownFile}:${failure.line}` : undefined;
    const original = failure.ref !== null ? errors.get(failure.ref) : undefined;
    if (original instanceof VmrigError) {
      if (location) original.location = location;
      throw original;
    }
    throw new VmrigError(
      failure.type === "AssertionError"
        ? `assertion failed${failure.message ? `: ${failure.message}` : ""}${failure.source ? ` (${failure.source.trim()})` : ""}`
        : `the test script raised ${failure.type}: ${failure.message}`,
      { call: "testScript", ...(location ? { location } : {}), output: `Traceback:\n${failure.traceback}` },
    );
  }
  throw new VmrigError(`the Python test script exited with status ${code}`, {
    call: "testScript",
    hint: "its stderr is in log.txt",
  });
}
