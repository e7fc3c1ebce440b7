import { AsyncLocalStorage } from "node:async_hooks";
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { VmrigError, tail } from "./errors.js";

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  /** called with each chunk of combined output, for progress display */
  onOutput?: (chunk: string) => void;
  /** what to suggest if the command fails */
  hint?: string;
  /** lines that explain a failure (e.g. dpkg's errors): shown in the report even when they are far from the end */
  explains?: RegExp;
  /** on failure, the whole output (both streams, in order) is written to this file */
  failureLog?: string;
  /**
   * A build step (mmdebstrap, apt in a chroot): run in its own PID and mount namespaces, so
   * its mounts are never visible on the host and vanish with it, and every process it
   * starts dies with it, and it with vmrig (even by SIGKILL).
   */
  isolate?: boolean;
  /** exit statuses besides 0 that are answers, not failures (pyflakes: 1 = it found something) */
  okStatus?: readonly number[];
  /** killed (its whole tree, when isolated) and an error after this long; RUN_DEADLINE_S unless given */
  timeoutS?: number;
}

/**
 * The longest any host command may run: an image build with a desktop's packages takes
 * ~10 min here. A command still running after this is hung (a stuck mount, a lock), and a
 * report beats waiting for ever.
 */
export const RUN_DEADLINE_S = 3600;

/**
 * Cancellation for every host command started inside `fn` (image builds, within a boot):
 * when `signal` aborts, `run()` kills its command (the whole tree of an isolated one) and
 * rejects. One scope for the layers below the session, which pass no signal themselves.
 */
const cancellation = new AsyncLocalStorage<AbortSignal>();

export function withCancellation<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  return signal ? cancellation.run(signal, fn) : fn();
}

/** The command line that runs `cmd` isolated (RunOptions.isolate). */
function isolated(cmd: string, args: readonly string[]): [string, string[]] {
  // setpriv: unshare dies with vmrig; --kill-child: the namespace's first process dies with
  // unshare, and with it (the PID namespace's init) every process in the namespace.
  return [
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      "unshare",
      "--pid",
      "--fork",
      "--kill-child",
      "--mount",
      "--propagation",
      "private",
      "--",
      cmd,
      ...args,
    ],
  ];
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** both streams, in the order they came */
  output: string;
  status: number;
}

/** The output's last lines, after the lines that `explains` picks out of the rest (with the line before each). */
function explained(output: string, explains: RegExp | undefined): string {
  const last = tail(output, 30);
  if (!explains) return last;
  const lines = output.replace(/\n$/, "").split("\n");
  const shownFrom = Math.max(0, lines.length - 30);
  const picked = new Set<number>();
  lines.forEach((l, i) => {
    if (i >= shownFrom || !explains.test(l)) return;
    if (i > 0) picked.add(i - 1);
    picked.add(i);
  });
  if (picked.size === 0) return last;
  const earlier = [...picked]
    .filter((i) => i < shownFrom)
    .sort((a, b) => a - b)
    .slice(-40)
    .map((i) => lines[i]);
  return `(the lines that explain it, from earlier in the output)\n${earlier.join("\n")}\n(the end of the output)\n${last}`;
}

/** Run a host command to completion; a non-zero exit throws with the command and its output. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const signal = cancellation.getStore();
  if (signal?.aborted) return Promise.reject(interrupted(cmd, signal));
  return new Promise((resolve, reject) => {
    const [file, argv] = opts.isolate ? isolated(cmd, args) : [cmd, args];
    const child = spawn(file, argv, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      detached: true,
    });
    // Stopped with its process group (it leads one: `detached`), so a shell's children go
    // too; "close" would otherwise wait for the pipes they hold open.
    const stop = () => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL"); // not started, or already gone
      }
    };
    signal?.addEventListener("abort", stop, { once: true });
    const limitS = opts.timeoutS ?? RUN_DEADLINE_S;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, limitS * 1000);
    child.once("close", () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    // both streams in the order they came: an error report must show a tool's errors
    // where they happened, not all of stderr before all of stdout
    const both: Buffer[] = [];
    child.stdout!.on("data", (d: Buffer) => {
      out.push(d);
      both.push(d);
      opts.onOutput?.(d.toString());
    });
    child.stderr!.on("data", (d: Buffer) => {
      err.push(d);
      both.push(d);
      opts.onOutput?.(d.toString());
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const shown = [cmd, ...args].map(shellQuote).join(" ");
    child.on("error", (e) =>
      reject(
        new VmrigError(`could not start ${cmd}: ${e.message}`, {
          command: shown,
          hint: opts.hint ?? `is ${cmd} installed? \`vmrig doctor\` lists what is missing`,
          cause: e,
        }),
      ),
    );
    child.on("close", (code, killedBy) => {
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      const combined = Buffer.concat(both).toString();
      if (code === 0 || (code !== null && opts.okStatus?.includes(code)))
        return resolve({ stdout, stderr, output: combined, status: code });
      if (signal?.aborted) return reject(interrupted(cmd, signal));
      if (timedOut)
        return reject(
          new VmrigError(`host command did not finish within ${limitS} s: stopped`, {
            command: shown,
            output: explained(combined, opts.explains),
            hint: "it hung or the host is overloaded; the output above shows where it stopped",
          }),
        );
      if (opts.failureLog) {
        fs.mkdirSync(path.dirname(opts.failureLog), { recursive: true });
        fs.writeFileSync(opts.failureLog, combined);
      }
      const hint = /No space left on device/.test(combined)
        ? "the disk is full: `vmrig gc` frees store entries no test uses; `df -h` shows which file system is out of space"
        : opts.hint;
      reject(
        new VmrigError(`host command failed (${killedBy ? `killed by ${killedBy}` : `exit status ${code}`})`, {
          command: shown,
          status: code,
          output: explained(combined, opts.explains),
          ...(hint ? { hint } : {}),
        }),
      );
    });
  });
}

/** A host command stopped because its scope was cancelled (Ctrl-C): not a failure to retry. */
export class Interrupted extends VmrigError {}

function interrupted(cmd: string, signal: AbortSignal): VmrigError {
  return new Interrupted(`interrupted (${String(signal.reason ?? "signal")}): ${cmd} was stopped`);
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Start a long-lived helper (QEMU, a switch) that must never outlive vmrig:
 * the kernel kills it if our process dies, even by SIGKILL. It runs in a session of its
 * own (`detached`), so a Ctrl-C at the terminal reaches vmrig alone, which stops its
 * helpers in order, and not QEMU or a switch directly (a Python prompt's Ctrl-C killed
 * the vlan switch under its machines). A helper that reads the terminal passes
 * `detached: false`.
 */
export function spawnOwned(cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
  return spawn("setpriv", ["--pdeathsig", "KILL", "--", cmd, ...args], { detached: true, ...opts });
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function terminate(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited(child);
  clearTimeout(timer);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Resolve with `p`'s value, or with `undefined` after `ms` — and clear the
 * timer either way, so a finished race never keeps the process alive.
 */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise that rejects when `signal` aborts (with its reason) and never resolves; unhandled rejection is muted. */
export function rejectOnAbort(signal: AbortSignal | undefined): Promise<never> {
  const p = new Promise<never>((_, reject) => {
    if (!signal) return;
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
  });
  p.catch(() => undefined);
  return p;
}

/** The PIDs of a process's children (none if it is gone). */
export function childPids(pid: number): number[] {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((t) =>
        fs.readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ").filter(Boolean).map(Number),
      );
  } catch {
    return [];
  }
}

/**
 * Alive and not a zombie. A zombie whose parent died stays until the host's init reaps it,
 * and this host's init does not: for "is it still running", a zombie is gone.
 */
export function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Is `command` on the PATH? */
export function commandExists(command: string): boolean {
  return (process.env.PATH ?? "").split(":").some((d) => {
    try {
      fs.accessSync(path.join(d, command), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Is a process with this PID alive (possibly someone else's)? */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
