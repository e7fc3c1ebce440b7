import fs from "node:fs";
import path from "node:path";
import repl from "node:repl";
import { PassThrough } from "node:stream";
import type { LoadedTest } from "../runner/load.js";
import { Logger, runScript, startTestMachines, type Accel, type DebugFailure, type Terminal } from "../runner/run.js";
import { runPythonScript } from "../runner/python.js";
import { isPythonTest, pythonScriptOf, type Rig } from "../runner/test.js";
import { errorMessage } from "../util/errors.js";

export interface ReplOptions {
  outputDir: string;
  accel: "auto" | Accel;
  keepVmState: boolean;
}

/**
 * Routes this process's keystrokes: to the REPL, or, while a machine's shell()
 * has borrowed the terminal, to that shell (so Ctrl-C reaches the guest).
 */
export class KeyboardRouter {
  readonly replInput = new PassThrough();
  private lent: PassThrough | undefined;
  private readonly wasRaw: boolean;

  constructor() {
    const stdin = process.stdin;
    this.wasRaw = stdin.isTTY ? stdin.isRaw : false;
    if (stdin.isTTY) stdin.setRawMode(true);
    stdin.on("data", (d: Buffer) => (this.lent ?? this.replInput).write(d));
    stdin.on("end", () => this.replInput.end());
  }

  get borrowed(): boolean {
    return this.lent !== undefined;
  }

  lend(): Terminal {
    const input = new PassThrough();
    this.lent = input;
    return {
      input,
      output: process.stdout,
      ...(process.stdout.columns ? { columns: process.stdout.columns, rows: process.stdout.rows } : {}),
      release: () => {
        if (this.lent === input) this.lent = undefined;
      },
    };
  }

  restore(): void {
    if (process.stdin.isTTY) process.stdin.setRawMode(this.wasRaw);
    process.stdin.pause();
  }
}

/**
 * `vmrig repl FILE` (NixOS's driverInteractive): every machine and global in scope,
 * top-level await, `testScript()` to run the script, `machine.shell()` for a root shell.
 */
export async function startRepl(loaded: LoadedTest, opts: ReplOptions): Promise<void> {
  if (isPythonTest(loaded.def)) return startPythonRepl(loaded, opts);
  const { def } = loaded;
  const resultDir = path.resolve(opts.outputDir, def.name);
  fs.mkdirSync(resultDir, { recursive: true });
  const keyboard = new KeyboardRouter();
  // The log stays complete in log.txt; on screen it pauses while a shell owns it.
  const logger = new Logger(path.join(resultDir, "log.txt"), (line) => {
    if (!keyboard.borrowed) process.stderr.write(`${line}\n`);
  });
  logger.serialStdout = false;
  let rig: Rig | undefined;
  const shutdown = async () => {
    await rig?.close();
    await logger.close();
    keyboard.restore();
  };
  try {
    rig = await startTestMachines(
      loaded,
      { ...opts, terminal: () => keyboard.lend(), interactive: true },
      logger,
      resultDir,
    );
  } catch (e) {
    await shutdown();
    throw e;
  }
  const ctx = rig;
  const names = rig.machines.map((m) => m.name);
  process.stdout.write(
    [
      `vmrig interactive: ${def.name}`,
      `  machines: ${names.join(", ")} (they boot on first use, or with start() / startAll())`,
      "  testScript()        run the test script",
      `  ${names[0] ?? "machine"}.shell()  a root shell on a machine (exit or Ctrl-D to come back, Ctrl-] to detach)`,
      "  serialStdoutOn()    show the serial consoles",
      "  Ctrl-D or .exit     stop the machines and leave" +
        (opts.keepVmState ? " (disks are kept: --keep-vm-state)" : ""),
      "",
    ].join("\n"),
  );
  await replOver(keyboard, {
    ...ctx,
    testScript: () =>
      logger.nested(`running ${def.name}'s test script`, () => runScript(loaded, ctx, logger, Infinity, undefined)),
  });
  process.stdout.write("stopping the machines…\n");
  try {
    await shutdown();
  } catch (e) {
    process.stderr.write(`${errorMessage(e)}\n`);
  }
}

/** A Node REPL over `scope` (top-level await) on the router's keyboard, until Ctrl-D, .exit, SIGTERM or SIGHUP. */
export async function replOver(keyboard: KeyboardRouter, scope: object): Promise<void> {
  const server = repl.start({
    prompt: "vmrig> ",
    input: keyboard.replInput,
    output: process.stdout,
    terminal: Boolean(process.stdout.isTTY),
    useGlobal: false,
    ignoreUndefined: true,
  });
  Object.assign(server.context, scope);
  const onTerm = () => server.close();
  process.once("SIGTERM", onTerm);
  process.once("SIGHUP", onTerm);
  // bounded: by the user, who ends the prompt (Ctrl-D)
  await new Promise<void>((resolve) => {
    server.on("exit", () => resolve());
  });
  process.off("SIGTERM", onTerm);
  process.off("SIGHUP", onTerm);
}

/**
 * `vmrig run --debug`: on a failure the test's machines stay up and a REPL opens at that
 * point, with the error, every machine and global in scope; leaving it lets the run go on
 * (the machines stop, the result is the failure).
 */
export function debugOnFailure(): {
  terminal: () => Terminal;
  onFailure: (f: DebugFailure) => Promise<void>;
} {
  let keyboard: KeyboardRouter | undefined;
  const router = () => (keyboard ??= new KeyboardRouter());
  return {
    terminal: () => router().lend(),
    onFailure: async ({ name, error, ctx, machines }) => {
      process.stdout.write(
        [
          ``,
          `vmrig --debug: ${name} failed; its machines are still up`,
          `  error               the failure (error.message); the report above says where`,
          `  machines: ${machines.join(", ")}   e.g. await ${machines[0] ?? "machine"}.succeed("journalctl -b --no-pager | tail")`,
          `  ${machines[0] ?? "machine"}.shell()  a root shell (exit or Ctrl-D to come back)`,
          "  Ctrl-D or .exit     stop the machines and go on",
          "",
        ].join("\n"),
      );
      const k = router();
      try {
        await replOver(k, { ...ctx, error });
      } finally {
        k.restore();
        keyboard = undefined;
      }
    },
  };
}

/**
 * `vmrig repl FILE` on a Python test: NixOS's driverInteractive, a Python prompt with the
 * machines and globals, `test_script()` to run the script. The prompt owns the terminal
 * (Python's own line editing); vmrig's log goes to stderr beside it.
 */
async function startPythonRepl(loaded: LoadedTest, opts: ReplOptions): Promise<void> {
  const { def } = loaded;
  const resultDir = path.resolve(opts.outputDir, def.name);
  fs.mkdirSync(resultDir, { recursive: true });
  const logger = new Logger(path.join(resultDir, "log.txt"), (line) => process.stderr.write(`${line}\n`));
  logger.serialStdout = false;
  // Ctrl-C at the prompt is Python's (KeyboardInterrupt, as in NixOS), not the end of vmrig:
  // the terminal sends it to both processes
  const keepGoing = () => undefined;
  process.on("SIGINT", keepGoing);
  let rig: Rig | undefined;
  try {
    rig = await startTestMachines(loaded, { ...opts, interactive: true }, logger, resultDir);
    const ctx = rig;
    const script = pythonScriptOf(def, () => ctx.nodes) ?? "";
    await runPythonScript(script, loaded.file, ctx, logger, resultDir, { interactive: true });
  } finally {
    process.off("SIGINT", keepGoing);
    await rig?.close();
    await logger.close();
  }
}
