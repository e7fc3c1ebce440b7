import { fileURLToPath } from "node:url";
import path from "node:path";

/** Which kind of failure: decides the exit status (SPEC §6). */
export type ErrorKind =
  /** bad input, found before any VM boots: exit 2 */
  | "config"
  /** a test failed (assertion, timeout, build failure not caused by input): exit 1 */
  | "test";

export interface VmrigErrorDetails {
  kind?: ErrorKind;
  machine?: string;
  /** the API call as the user wrote it, e.g. `succeed("curl …")` */
  call?: string;
  command?: string;
  status?: number | null;
  output?: string;
  /** what to try next */
  hint?: string;
  /** `file:line:col` in the user's test file */
  location?: string;
  cause?: unknown;
}

const OUTPUT_TAIL_LINES = 20;

export function tail(text: string, lines = OUTPUT_TAIL_LINES): string {
  const all = text.replace(/\n$/, "").split("\n");
  const kept = all.slice(-lines);
  const dropped = all.length - kept.length;
  return (dropped > 0 ? `… (${dropped} earlier lines)\n` : "") + kept.join("\n");
}

/**
 * Every failure vmrig reports. The message alone must tell the user which
 * machine, which call, which command, what came back and what to try.
 */
export class VmrigError extends Error {
  readonly kind: ErrorKind;
  readonly machine: string | undefined;
  readonly call: string | undefined;
  readonly command: string | undefined;
  readonly status: number | null | undefined;
  readonly output: string | undefined;
  readonly hint: string | undefined;
  location: string | undefined;

  constructor(summary: string, details: VmrigErrorDetails = {}) {
    super(summary, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "VmrigError";
    this.kind = details.kind ?? "test";
    this.machine = details.machine;
    this.call = details.call;
    this.command = details.command;
    this.status = details.status;
    this.output = details.output;
    this.hint = details.hint;
    this.location = details.location;
    this.summary = summary;
    // Error's constructor defines an own `message`; drop it so the report getter below is used.
    delete (this as { message?: string }).message;
  }

  readonly summary: string;

  /** The full multi-line report, as printed by the CLI and written to the log. */
  override get message(): string {
    return formatReport(this);
  }
  override set message(_v: string) {
    // Error's constructor assigns message; the report is derived instead.
  }
}

function formatReport(e: VmrigError): string {
  const head = e.machine && e.call ? `${e.machine}.${e.call}: ${e.summary}` : e.summary;
  const lines = [head];
  if (e.machine) lines.push(`  machine: ${e.machine}`);
  if (e.command !== undefined) lines.push(`  command: ${e.command}`);
  if (e.status !== undefined) lines.push(`  status:  ${e.status === null ? "(none)" : e.status}`);
  if (e.output !== undefined) {
    const out = e.output.trim() === "" ? "(empty)" : tail(e.output);
    lines.push("  output:", ...out.split("\n").map((l) => `    ${l}`));
  }
  if (e.location) lines.push(`  at ${e.location}`);
  if (e.hint) lines.push(`  hint: ${e.hint}`);
  return lines.join("\n");
}

export function configError(summary: string, details: Omit<VmrigErrorDetails, "kind"> = {}): VmrigError {
  return new VmrigError(summary, { ...details, kind: "config" });
}

const ownDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/**
 * The first stack frame outside vmrig and Node itself: the line of the user's
 * test file that made the call. Stack traces are source-mapped (see runner/load).
 */
export function callerLocation(stack: string | undefined = new Error().stack): string | undefined {
  if (!stack) return undefined;
  for (const line of stack.split("\n").slice(1)) {
    const m = /\(?((?:file:\/\/)?\/[^()]+?):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (!m) continue;
    let file = m[1]!;
    if (file.startsWith("file://")) file = fileURLToPath(file);
    if (file.startsWith(ownDir + path.sep) || file.includes(`${path.sep}node_modules${path.sep}`)) continue;
    const rel = path.relative(process.cwd(), file);
    return `${rel.startsWith("..") ? file : rel}:${m[2]}:${m[3]}`;
  }
  return undefined;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
