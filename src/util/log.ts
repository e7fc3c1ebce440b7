/**
 * What every layer logs through. The driver's Logger implements it (the nested, timed
 * log the user sees live and in log.txt); lower layers only know this interface.
 */
export interface Log {
  /** a line for the user, live and in the log file */
  log(message: string, machine?: string): void;
  /** the log file only (command stderr, diagnostics) */
  detail(message: string, machine?: string): void;
  /** a line of a machine's serial console */
  consoleLine(machine: string, line: string): void;
  /** print `message`, run `fn` indented under it, and say how long it took */
  nested<T>(message: string, fn: () => Promise<T>, machine?: string): Promise<T>;
  /** an event for the report's timeline (a fault set or cleared, a machine started or stopped) */
  mark(kind: MarkKind, label: string, machine?: string): void;
}

export type MarkKind = "fault" | "power";

/** One call of the script (a machine method, a global), as the log's top-level headings show it. */
export interface Call {
  atMs: number;
  durationMs: number;
  label: string;
  machine?: string;
  failed?: boolean;
}

/** One event on a test's timeline, `atMs` after the test began. */
export interface Mark {
  atMs: number;
  kind: MarkKind;
  label: string;
  machine?: string;
}
