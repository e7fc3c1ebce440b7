import fs from "node:fs";
import type { Call, Log, Mark, MarkKind } from "../util/log.js";

/** The report lists at most this many calls of a test. */
const MAX_CALLS = 2000;

/**
 * The run's nested log: what the user sees live and what goes into log.txt.
 * Lines from inside `nested()` are indented under their heading, with timing.
 */
export class Logger implements Log {
  private depth = 0;
  private file: fs.WriteStream | undefined;
  private readonly t0 = Date.now();
  /** the timeline's events so far (the HTML report draws them) */
  readonly marks: Mark[] = [];
  /** the script's calls so far: each heading at the top level of the log (the HTML report lists them) */
  readonly calls: Call[] = [];

  constructor(
    logPath: string | undefined,
    private readonly out: (line: string) => void = (l) => process.stderr.write(l + "\n"),
  ) {
    this.file = logPath ? fs.createWriteStream(logPath, { flags: "a" }) : undefined;
  }

  private stamp(): string {
    return `${((Date.now() - this.t0) / 1000).toFixed(1).padStart(6)}s`;
  }

  log(message: string, machine?: string): void {
    const prefix = "  ".repeat(this.depth) + (machine ? `${machine}: ` : "");
    for (const line of message.split("\n")) {
      this.out(`${prefix}${line}`);
      this.file?.write(`${this.stamp()} ${prefix}${line}\n`);
    }
  }

  mark(kind: MarkKind, label: string, machine?: string): void {
    this.marks.push({ atMs: Date.now() - this.t0, kind, label, ...(machine ? { machine } : {}) });
  }

  /** When the log began (the timeline's zero). */
  get startedAt(): number {
    return this.t0;
  }

  /** Serial console lines are shown live (NixOS's serial_stdout_on) unless turned off. */
  serialStdout = true;

  /** A line of a machine's serial console: to the log file, and live if enabled. */
  consoleLine(machine: string, line: string): void {
    if (!line.trim()) return;
    const text = `${machine} # ${line}`;
    if (this.serialStdout) this.out(`${"  ".repeat(this.depth)}${text}`);
    this.file?.write(`${this.stamp()} ${"  ".repeat(this.depth)}${text}\n`);
  }

  /** Write to the log file only (stderr of commands, diagnostics). */
  detail(message: string, machine?: string): void {
    const prefix = "  ".repeat(this.depth) + (machine ? `${machine} # ` : "");
    for (const line of message.split("\n")) this.file?.write(`${this.stamp()} ${prefix}${line}\n`);
  }

  /** Print `message`, run `fn` indented under it, and say how long it took. */
  async nested<T>(message: string, fn: () => Promise<T>, machine?: string): Promise<T> {
    this.log(message, machine);
    const start = Date.now();
    // the script's own calls sit at depth 1 (under "running X's test script") or 2 (in a subtest)
    const call =
      this.depth <= 2 && this.calls.length < MAX_CALLS
        ? { atMs: start - this.t0, durationMs: 0, label: message, ...(machine ? { machine } : {}) }
        : undefined;
    if (call) this.calls.push(call);
    this.depth++;
    try {
      const result = await fn();
      this.depth--;
      if (call) call.durationMs = Date.now() - start;
      this.log(`(finished: ${message}, in ${((Date.now() - start) / 1000).toFixed(2)} s)`, machine);
      return result;
    } catch (e) {
      this.depth--;
      if (call) Object.assign(call, { durationMs: Date.now() - start, failed: true });
      this.log(`(failed: ${message}, after ${((Date.now() - start) / 1000).toFixed(2)} s)`, machine);
      throw e;
    }
  }

  /** Flush and close the log file; a line that comes later (a build still ending) goes to the screen only. */
  close(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    // bounded: a local file's flush
    return new Promise((r) => (file ? file.end(() => r()) : r()));
  }
}
