import { StringDecoder } from "node:string_decoder";
import type { Guest } from "../vm/guest.js";
import { BackdoorClosed, CommandTimeout } from "../vm/backdoor.js";
import type { ContainerSpec } from "../vm/nspawn.js";
import type { VmSpec } from "../vm/qemu-args.js";
import type { QemuVm } from "../vm/qemu.js";
import type { SnapshotStore } from "../vm/snapshot.js";
import { VmrigError, tail, type VmrigErrorDetails } from "../util/errors.js";
import type { Log } from "../util/log.js";
import type { Slots } from "../util/semaphore.js";
import type { ScreenRecorder } from "./video.js";

/** A regex argument: a string is a regular expression, as in NixOS. */
export type Pattern = string | RegExp;

export interface ExecuteOptions {
  /** seconds; default 900 */
  timeout?: number;
  /** false: do not collect stdout (NixOS `check_output`) */
  checkOutput?: boolean;
}

export interface ExecuteResult {
  status: number;
  stdout: string;
}

export interface CommandOutput extends ExecuteResult {
  stderr: string;
}

/** A terminal lent to `shell()`: raw keystrokes in, the guest's screen out. */
export interface Terminal {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  columns?: number;
  rows?: number;
  /** give the terminal back (e.g. to the REPL) */
  release?: () => void;
}

/** What the driver gives each machine. */
export interface MachineContext {
  logger: Log;
  resultDir: string;
  /** how to start the machine (a VM or a container), made lazily: the image is built before the first start */
  spec: () => VmSpec | ContainerSpec;
  /** run before every command (the script's active polling conditions) */
  beforeCommand?: () => Promise<void>;
  /** the terminal shell() talks to (default: this process's stdin and stdout) */
  terminal?: () => Terminal;
  /** the test's enableOCR: getScreenText and waitForText refuse without it */
  ocr?: boolean;
  /** where boot snapshots are kept; absent: every start boots (--no-snapshots, bootSnapshot = false, --keep-vm-state) */
  snapshots?: SnapshotStore;
  /** cold boots allowed at once (restores are not counted: they cost almost nothing) */
  coldBoots?: Slots;
  /** `--video`: records the screen while a VM runs */
  recorder?: ScreenRecorder;
  /** the names of the node's specialisations, for the report of a switch to one that does not exist */
  specialisations?: string[];
}

export const DEFAULT_TIMEOUT = 900;

/** How many lines of one command the live log shows (all of it is the command's result either way). */
const LIVE_LINES = 2000;

/** A command's output cut into lines for the live log as it arrives. */
class LiveLines {
  private partial = "";
  private count = 0;
  private readonly decoder = new StringDecoder("utf8");

  constructor(private readonly emit: (line: string) => void) {}

  push(chunk: Buffer): void {
    if (this.count > LIVE_LINES) return;
    const parts = (this.partial + this.decoder.write(chunk)).split("\n");
    this.partial = parts.pop()!;
    for (const l of parts) this.line(l);
  }

  end(): void {
    if (this.partial) this.line(this.partial);
    this.partial = "";
  }

  private line(l: string): void {
    if (++this.count === LIVE_LINES + 1) this.emit(`… (more output: the log shows the first ${LIVE_LINES} lines)`);
    else if (this.count <= LIVE_LINES) this.emit(l);
  }
}

export function toRegExp(p: Pattern): RegExp {
  return typeof p === "string" ? new RegExp(p, "m") : p;
}

/** A value as the user would write it in a call, for error reports. */
export function quote(s: string): string {
  return JSON.stringify(s);
}

/** What a failed command printed, for the error report: stdout, then stderr. */
export function shown(r: CommandOutput): string {
  if (!r.stderr.trim()) return r.stdout;
  return `${r.stdout}${r.stdout && !r.stdout.endsWith("\n") ? "\n" : ""}--- stderr ---\n${r.stderr}`;
}

/**
 * The state every area of the Machine API shares: the running guest (if any), the disks
 * that live for the whole run, and the one way each area runs a command, reports a failure
 * and logs. The areas (commands.ts, waiting.ts, systemd.ts, …) are functions over it.
 */
export class MachineCore {
  /** the running guest; replaced on every start */
  guest: Guest | undefined;
  /** a start in progress, shared by concurrent callers */
  starting: Promise<void> | undefined;
  /** the machine's disk overlays (drive id → file): made at its first start, kept for the whole run */
  disks: Record<string, string> | undefined;
  /** a boot snapshot loaded ahead of the first start, paused (power.prepare) */
  prepared: Promise<QemuVm | undefined> | undefined;
  /** the user-mode NIC for forwardPort() is plugged in */
  hostNic = false;
  /** QEMU start → backdoor and systemd both answering, ms */
  systemdReadyMs: number | undefined;
  /** the run has stopped the machine for good (power.kill): nothing may start it again */
  closed = false;
  /** aborted by power.kill: a boot or restore still under way stops at once (its QEMU or container killed) */
  readonly closing = new AbortController();

  constructor(
    readonly name: string,
    readonly ctx: MachineContext,
  ) {}

  get log(): Log {
    return this.ctx.logger;
  }

  /** A failure of `call` on this machine. */
  fail(summary: string, call: string, extra: Omit<VmrigErrorDetails, "machine" | "call"> = {}): VmrigError {
    return new VmrigError(summary, { machine: this.name, call, ...extra });
  }

  nested<T>(message: string, fn: () => Promise<T>): Promise<T> {
    return this.ctx.logger.nested(message, fn, this.name);
  }

  /** The running guest, started first if need be (machines boot on first use). */
  async up(): Promise<Guest> {
    if (!this.guest?.running) await this.start();
    return this.guest!;
  }

  /** Set by power.ts: boots the machine (kept here so that every area can start it). */
  start: () => Promise<void> = () => Promise.reject(new Error("Machine core without a start function"));

  /** The machine's VM spec, for what only a VM has (boot snapshots, checkpoints). */
  vmSpec(call: string): VmSpec {
    const spec = this.ctx.spec();
    if (spec.kind === "nspawn") throw this.notAVm(call, undefined);
    return spec;
  }

  private notAVm(call: string, location: string | undefined): VmrigError {
    return this.fail(`${this.name} is a container, not a VM: ${call} needs QEMU`, call, {
      location,
      hint: "declare the machine under `nodes` instead of `containers` to make it a VM",
    });
  }

  /** The running QEMU VM, for calls that need one (screen, keys, QMP). */
  async qemu(call: string, location: string | undefined): Promise<QemuVm> {
    const g = await this.up();
    if (g.kind !== "qemu") throw this.notAVm(call, location);
    return g as QemuVm;
  }

  /**
   * Run one command in the guest: the polling conditions first, stderr to the log, timeouts
   * and a lost guest as reports. `live`: the user's own command — its stdout and stderr go to
   * the log line by line while it runs (the first LIVE_LINES lines), not only at the end.
   */
  async run(
    cmd: string,
    call: string,
    location: string | undefined,
    timeout: number,
    live = false,
  ): Promise<CommandOutput> {
    const g = await this.up();
    await this.ctx.beforeCommand?.();
    const lines = live ? new LiveLines((l) => this.log.detail(l, this.name)) : undefined;
    try {
      const r = await g.backdoor.run(cmd, timeout, lines && ((_stream, chunk) => lines.push(chunk)));
      lines?.end();
      const stderr = r.stderr.toString();
      if (stderr && !lines) this.log.detail(stderr.trimEnd(), this.name);
      return { status: r.status, stdout: r.stdout.toString(), stderr };
    } catch (e) {
      if (e instanceof CommandTimeout) {
        throw this.fail(`timed out after ${timeout} s`, call, {
          command: cmd,
          status: null,
          output: e.partial.stdout.toString() + e.partial.stderr.toString(),
          location,
          hint: "the command was killed in the guest; raise `timeout` if it is just slow",
        });
      }
      if (e instanceof BackdoorClosed) {
        throw this.fail(e.message, call, {
          command: cmd,
          location,
          output: tail(g.console.all, 15),
          hint: "the machine's console log in the result folder shows what happened",
        });
      }
      throw e;
    }
  }
}
