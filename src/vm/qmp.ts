import { EventEmitter } from "node:events";
import type { Socket } from "node:net";

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = "QmpError";
  }
}

/** How long any QMP command may take: each returns at once, even `migrate` (it runs in the background). */
const QMP_TIMEOUT_MS = 60_000;

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/**
 * A QMP client. QEMU answers commands in order, so replies are matched to a
 * FIFO of pending commands; events are emitted as "event" and kept in a
 * bounded history so `waitForEvent` can also find one that already arrived.
 */
export class Qmp extends EventEmitter {
  private buf = "";
  private pending: Pending[] = [];
  private greeted!: Promise<void>;
  private closedError: Error | undefined;
  readonly history: QmpEvent[] = [];

  constructor(private readonly socket: Socket) {
    super();
    socket.setEncoding("utf8");
    // bounded: `launchQemu` gives the greeting CONNECT_S
    this.greeted = new Promise((resolve, reject) => {
      this.once("greeting", () => resolve());
      socket.once("close", () => reject(new Error("QMP socket closed before the greeting")));
    });
    this.greeted.catch(() => undefined);
    socket.on("data", (d: string) => this.onData(d));
    socket.on("close", () => {
      this.closedError = new Error("QEMU closed its QMP connection (the VM process exited)");
      for (const p of this.pending.splice(0)) p.reject(this.closedError);
      this.emit("close");
    });
    socket.on("error", () => undefined); // surfaced through "close"
  }

  async handshake(): Promise<void> {
    await this.greeted;
    await this.execute("qmp_capabilities");
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ("QMP" in msg) this.emit("greeting", msg);
      else if ("event" in msg) {
        const ev = msg as unknown as QmpEvent;
        this.history.push(ev);
        if (this.history.length > 500) this.history.shift();
        this.emit("event", ev);
      } else if ("return" in msg || "error" in msg) {
        const p = this.pending.shift();
        if (!p) continue;
        if ("error" in msg) {
          const err = msg.error as { class: string; desc: string };
          p.reject(new QmpError(p.command, err.class, err.desc));
        } else p.resolve(msg.return);
      }
    }
  }

  /**
   * One command; rejects if QEMU has not answered within `timeoutMs` (a QEMU that stops
   * answering must end in a report, not a hang). A late answer still takes its place in the
   * FIFO, so later replies stay matched to their commands.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = QMP_TIMEOUT_MS): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    // bounded: the timer below
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`QEMU did not answer the QMP command ${command} within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      const settle =
        <V>(f: (v: V) => void) =>
        (v: V) => {
          clearTimeout(timer);
          f(v);
        };
      this.pending.push({ command, resolve: settle(resolve as (v: unknown) => void), reject: settle(reject) });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + "\n");
    });
  }

  /** Human monitor command through QMP, as NixOS's send_monitor_command. */
  hmp(commandLine: string): Promise<string> {
    return this.execute<string>("human-monitor-command", { "command-line": commandLine });
  }

  /** Resolves with the first event (from `since` in the history on) that matches. */
  waitForEvent(match: (e: QmpEvent) => boolean, since = 0, signal?: AbortSignal): Promise<QmpEvent> {
    const seen = this.history.slice(since).find(match);
    if (seen) return Promise.resolve(seen);
    // bounded: by `signal`, which every caller has on a timer
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (!match(e)) return;
        cleanup();
        resolve(e);
      };
      const onAbort = () => {
        cleanup();
        reject(signal!.reason instanceof Error ? signal!.reason : new Error("aborted"));
      };
      const cleanup = () => {
        this.off("event", onEvent);
        signal?.removeEventListener("abort", onAbort);
      };
      this.on("event", onEvent);
      signal?.addEventListener("abort", onAbort);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
