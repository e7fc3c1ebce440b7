import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import type { Machine } from "../session/context.js";
import { VmrigError, configError, errorMessage } from "../util/errors.js";
import { run, spawnOwned } from "../util/proc.js";
import type { Logger } from "../session/logger.js";
import { PyArgs, PYTHON_METHODS, parseStartCommand } from "./python-api.js";
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
  "create_machine",
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

/** How the script's process is driven: run to its end (a test), or a prompt on the terminal (`vmrig repl`). */
export interface PythonRunOptions {
  /** aborted when the run no longer waits for the script (deadline, Ctrl-C): the process is killed */
  ended?: AbortSignal;
  /** NixOS's driverInteractive: a Python prompt with the machines, `test_script()` runs the script */
  interactive?: boolean;
}

/** Run a Python test script against the script context's machines; resolves when it passes, throws its failure. */
export async function runPythonScript(
  script: string,
  testFile: string,
  ctx: TestContext,
  logger: Logger,
  resultDir: string,
  opts: PythonRunOptions = {},
): Promise<void> {
  const first = scriptFirstLine(fs.readFileSync(testFile, "utf8"), script);
  const py = path.join(resultDir, "testScript.py");
  fs.writeFileSync(py, dedent(script));
  const shownFile = path.relative(process.cwd(), testFile) || testFile;
  const names = ctx.machines.map((m) => m.name);
  const child = spawnOwned(
    PYTHON,
    ["-u", RUNTIME, py, shownFile, String(first), JSON.stringify(names), ...(opts.interactive ? ["interactive"] : [])],
    {
      // interactive: the prompt owns the terminal; vmrig's log goes on to stderr beside it
      stdio: opts.interactive
        ? ["inherit", "inherit", "inherit", "pipe", "pipe"]
        : ["ignore", "pipe", "pipe", "pipe", "pipe"],
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
      // interactive: in the terminal's foreground group, so that it reads the terminal and Ctrl-C is its KeyboardInterrupt
      detached: !opts.interactive,
    },
  );
  opts.ended?.addEventListener("abort", () => child.kill("SIGKILL"), { once: true });
  if (!opts.interactive)
    for (const [stream, tag] of [
      [child.stdout!, "print"],
      [child.stderr!, "stderr"],
    ] as const) {
      readline
        .createInterface({ input: stream })
        .on("line", (l) => (tag === "print" ? logger.log(l) : logger.detail(l)));
    }
  const session = new ScriptSession(ctx, logger);
  const served = session.serve(child.stdio[3] as NodeJS.ReadableStream, child.stdio[4] as NodeJS.WritableStream);
  // bounded: the run's deadline and Ctrl-C kill the script (`ended` above); interactive: the user leaves
  const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  await served.catch(() => undefined);
  session.endOpenBlocks();
  if (code === 0) return;
  throw session.failureError(code, shownFile);
}

/** One script's requests to vmrig (machine calls, log blocks, subtests) and what it reported failing. */
class ScriptSession {
  private readonly byName: Map<string, Machine>;
  private readonly errors = new Map<number, unknown>();
  private failure: Failure | undefined;
  /** open nested log steps and subtests: each waits for its end request */
  private readonly open: { end: (error?: string) => void }[] = [];

  constructor(
    private readonly ctx: TestContext,
    private readonly logger: Logger,
  ) {
    this.byName = new Map(ctx.machines.map((m) => [m.name, m]));
  }

  /** Answer every request line on `requests` on `answers`, until the script closes its end. */
  async serve(requests: NodeJS.ReadableStream, answers: NodeJS.WritableStream): Promise<void> {
    for await (const line of readline.createInterface({ input: requests })) {
      const req = JSON.parse(line) as Request;
      let answer: object;
      try {
        answer = { id: req.id, result: (await this.handle(req)) ?? null };
      } catch (e) {
        if (e instanceof VmrigError && req.location) e.location = req.location;
        this.errors.set(req.id, e);
        answer = { id: req.id, error: errorMessage(e), ref: req.id };
      }
      answers.write(JSON.stringify(answer) + "\n");
    }
  }

  endOpenBlocks(): void {
    for (const o of this.open.reverse()) o.end("the script ended inside it");
  }

  private block(start: (body: () => Promise<void>) => Promise<unknown>): void {
    let end!: (error?: string) => void;
    // bounded: ended by the script's end request, or by the script's end (endOpenBlocks)
    const body = new Promise<void>((resolve, reject) => {
      end = (error) => (error ? reject(new Error(error)) : resolve());
    });
    start(() => body).catch(() => undefined);
    this.open.push({ end });
  }

  private handle(req: Request): unknown {
    const { ctx } = this;
    switch (req.op) {
      case "hello":
        return { testName: ctx.driver.testName, resultDir: ctx.driver.resultDir, vlans: ctx.vlans.map((v) => v.vlan) };
      case "machine":
        return this.machineCall(String(req.machine), String(req.method), req);
      case "start_all":
        return ctx.startAll();
      case "join_all":
        return ctx.joinAll();
      case "create_machine":
        return this.createMachine(String(req.start_command), req.name as string | null, req.location);
      case "serial_stdout":
        return req.on ? ctx.serialStdoutOn() : ctx.serialStdoutOff();
      case "log":
        return ctx.log(String(req.message));
      case "nested_begin":
        return this.block((body) => this.logger.nested(String(req.message), body));
      case "subtest_begin":
        return this.block((body) => ctx.subtest(String(req.name), body));
      case "nested_end":
      case "subtest_end":
        this.open.pop()?.end(req.error as string | undefined);
        return undefined;
      case "failed":
        this.failure = req.failure as Failure;
        return undefined;
      default:
        throw new Error(`unknown request ${req.op}`);
    }
  }

  /** NixOS's create_machine: another machine of the node its start command names; its name for the script. */
  private createMachine(startCommand: string, name: string | null, location: string | null): string {
    const parsed = parseStartCommand(startCommand);
    if (!parsed)
      throw new VmrigError(`create_machine: ${JSON.stringify(startCommand)} names no node's VM`, {
        call: "create_machine()",
        ...(location ? { location } : {}),
        hint: 'vmrig machines are its nodes\' VMs: create_machine("${nodes.NODE.system.build.vm}/bin/run-NODE-vm [QEMU options]")',
      });
    const m = this.ctx.createMachine(parsed.node, {
      ...(name ? { name } : {}),
      qemuOptions: parsed.qemuOptions,
    });
    this.byName.set(m.name, m);
    return m.name;
  }

  private machineCall(name: string, method: string, req: Request): unknown {
    const m = this.byName.get(name);
    const impl = PYTHON_METHODS[method];
    if (!m) throw new VmrigError(`there is no machine called ${name}`, { call: method });
    if (!impl)
      throw new VmrigError(`Machine has no method ${method}()`, {
        machine: m.name,
        call: `${m.name}.${method}()`,
        hint: `the NixOS driver's methods vmrig has: ${Object.keys(PYTHON_METHODS).join(", ")}`,
      });
    return impl(m, new PyArgs(method, (req.args as unknown[]) ?? [], (req.kwargs as Record<string, unknown>) ?? {}));
  }

  /** The error for a script that exited with `code`: the machine call's own report when that is what failed. */
  failureError(code: number | null, shownFile: string): VmrigError {
    const failure = this.failure;
    if (!failure)
      return new VmrigError(`the Python test script exited with status ${code}`, {
        call: "testScript",
        hint: "its stderr is in log.txt",
      });
    const location = failure.line ? `${shownFile}:${failure.line}` : undefined;
    const original = failure.ref !== null ? this.errors.get(failure.ref) : undefined;
    if (original instanceof VmrigError) {
      if (location) original.location = location;
      return original;
    }
    return new VmrigError(
      failure.type === "AssertionError"
        ? `assertion failed${failure.message ? `: ${failure.message}` : ""}${failure.source ? ` (${failure.source.trim()})` : ""}`
        : `the test script raised ${failure.type}: ${failure.message}`,
      { call: "testScript", ...(location ? { location } : {}), output: `Traceback:\n${failure.traceback}` },
    );
  }
}

interface Request {
  id: number;
  op: string;
  location: string | null;
  [k: string]: unknown;
}
