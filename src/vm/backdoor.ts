import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Readable, Writable } from "node:stream";

/**
 * The backdoor's three channels: a VM's are three virtio-serial sockets (requests and
 * replies share one), a container's are FIFOs, one per direction.
 */
export interface BackdoorChannels {
  requests: Writable;
  replies: Readable;
  stderr: Readable;
  control: Writable;
}

/** Result of one command run through the backdoor. */
export interface CommandResult {
  status: number;
  stdout: Buffer;
  stderr: Buffer;
}

export class BackdoorClosed extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "BackdoorClosed";
  }
}

export class CommandTimeout extends Error {
  constructor(
    readonly seconds: number,
    readonly partial: CommandResult,
  ) {
    super(`timed out after ${seconds} s`);
    this.name = "CommandTimeout";
  }
}

const SAFE = /^[A-Za-z0-9 ,._+:@%/=-]$/;

/** Escape a command so that it is one line and bash's `printf %b` restores it byte for byte. */
export function encodeCommand(cmd: string): string {
  let out = "";
  for (const byte of Buffer.from(cmd, "utf8")) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && SAFE.test(ch) ? ch : `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/**
 * The bytes received so far, as a list of chunks. Finding a marker scans only
 * bytes not scanned before (plus the marker's length of overlap), and nothing
 * is concatenated until a frame is complete, so a 100 MB output costs O(n).
 */
class Accumulator {
  private chunks: Buffer[] = [];
  private length = 0;
  private scanned = 0;

  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }

  /** Bytes [start, end) as one buffer; copies only that range. */
  private slice(start: number, end: number): Buffer {
    const parts: Buffer[] = [];
    let pos = 0;
    for (const c of this.chunks) {
      const cEnd = pos + c.length;
      if (cEnd > start && pos < end) parts.push(c.subarray(Math.max(0, start - pos), Math.min(c.length, end - pos)));
      pos = cEnd;
      if (pos >= end) break;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Position of `marker`, or -1; a later call continues where this one stopped. */
  find(marker: Buffer): number {
    if (this.length < marker.length) return -1;
    const from = Math.max(0, this.scanned - marker.length + 1);
    const at = this.slice(from, this.length).indexOf(marker);
    if (at >= 0) {
      this.scanned = from + at;
      return from + at;
    }
    this.scanned = this.length;
    return -1;
  }

  /** Remove and return the first `n` bytes, dropping `skip` more after them. */
  take(n: number, skip = 0): Buffer {
    const out = Buffer.from(this.slice(0, n));
    const rest = this.length > n + skip ? this.slice(n + skip, this.length) : Buffer.alloc(0);
    this.chunks = rest.length ? [rest] : [];
    this.length = rest.length;
    this.scanned = 0;
    return out;
  }

  get size(): number {
    return this.length;
  }

  /** The first `n` bytes (or all), without removing them: for short headers. */
  peek(n = this.length): Buffer {
    return this.slice(0, Math.min(n, this.length));
  }

  /** Bytes from `start`, up to `max` of them, without removing them. */
  peekFrom(start: number, max: number): Buffer {
    return this.slice(start, Math.min(this.length, start + max));
  }
}

interface Running {
  id: string;
  pid: number | undefined;
  started: boolean;
  status: number | undefined;
  stdout: Buffer | undefined;
  stderr: Buffer | undefined;
  /** output as it arrives (for the live log), and how much of each stream has been handed on */
  onOutput: OutputListener | undefined;
  shown: { out: number; err: number };
  resolve: (r: CommandResult) => void;
  reject: (e: Error) => void;
}

export type OutputListener = (stream: "stdout" | "stderr", chunk: Buffer) => void;

const RS = "\x1e";

/**
 * Host side of the guest's backdoor shell (guest/backdoor). Commands run one at
 * a time, in order. Emits "ready" (with the guest's boot id) whenever the guest
 * shell (re)starts, and "stray" for bytes outside any command.
 */
export class Backdoor extends EventEmitter {
  private out = new Accumulator();
  private err = new Accumulator();
  private queue: Promise<unknown> = Promise.resolve();
  private current: Running | undefined;
  private closed: Error | undefined;
  bootId: string | undefined;

  private readonly cmd: Writable;
  private readonly ctl: Writable;
  private readonly streams: (Readable | Writable)[];

  constructor(ch: BackdoorChannels) {
    super();
    this.cmd = ch.requests;
    this.ctl = ch.control;
    this.streams = [...new Set([ch.requests, ch.replies, ch.stderr, ch.control])];
    ch.replies.on("data", (d: Buffer) => {
      this.out.push(d);
      this.pump();
    });
    ch.stderr.on("data", (d: Buffer) => {
      this.err.push(d);
      this.pump();
    });
    for (const s of this.streams) {
      s.on("error", () => undefined);
      s.on("close", () => this.close("the machine's backdoor connection closed (its process exited)"));
    }
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = new BackdoorClosed(reason);
    this.current?.reject(this.closed);
    this.current = undefined;
    this.emit("closed", this.closed);
    for (const s of this.streams) s.destroy();
  }

  private pump(): void {
    for (;;) {
      const cur = this.current;
      if (!cur || !cur.started) {
        // Between commands: look for banners and start markers.
        const at = this.out.find(Buffer.from(RS + "V:"));
        if (at < 0) {
          if (this.out.size > 4096) this.emit("stray", this.out.take(this.out.size - 8));
          return;
        }
        if (at > 0) {
          // the newline that ends a banner or pong line is not output
          const stray = this.out.take(at);
          if (stray.toString().trim()) this.emit("stray", stray);
        }
        const bytes = this.out.peek(256);
        const end = bytes.indexOf(RS, 1);
        if (end < 0) return;
        const header = bytes.subarray(1, end).toString();
        const ready = /^V:READY:(.*)$/.exec(header);
        const pong = /^V:PONG:(.*)$/.exec(header);
        const start = /^V:([0-9a-f]+):O:(\d+)$/.exec(header);
        if (ready) {
          this.out.take(end + 1);
          this.bootId = ready[1];
          if (cur) {
            // The shell restarted (reboot, crash) while a command was waiting for it.
            this.current = undefined;
            cur.reject(
              new BackdoorClosed("the machine's shell restarted (reboot or crash) before the command finished"),
            );
          }
          this.emit("ready", ready[1]);
        } else if (pong) {
          this.out.take(end + 1);
          this.emit("pong", pong[1]);
        } else if (start && cur && start[1] === cur.id) {
          this.out.take(end + 1);
          cur.started = true;
          cur.pid = Number(start[2]);
        } else {
          // Someone else's marker (a stale command after a resync): drop it.
          this.emit("stray", this.out.take(end + 1));
        }
        continue;
      }
      this.stream(cur);
      if (cur.stdout === undefined) {
        const marker = Buffer.from(`${RS}V:${cur.id}:E:`);
        const at = this.out.find(marker);
        if (at < 0) return;
        const rest = this.out.peekFrom(at + marker.length, 16);
        const close = rest.indexOf(RS + "\n");
        if (close < 0) return;
        cur.status = Number(rest.subarray(0, close).toString());
        cur.stdout = this.out.take(at, marker.length + close + 2);
      }
      if (cur.stderr === undefined) {
        const marker = Buffer.from(`${RS}V:${cur.id}:E${RS}`);
        const at = this.err.find(marker);
        if (at < 0) return;
        cur.stderr = this.err.take(at, marker.length);
      }
      this.current = undefined;
      cur.resolve({ status: cur.status!, stdout: cur.stdout, stderr: cur.stderr });
    }
  }

  /** Hand a running command's output on as it arrives, keeping back what may be the start of its end marker. */
  private stream(cur: Running): void {
    const listener = cur.onOutput;
    if (!listener) return;
    const step = (acc: Accumulator, done: boolean, marker: Buffer, key: "out" | "err") => {
      if (done) return;
      const at = acc.find(marker);
      let upTo = at;
      if (at < 0) {
        // all of it, but for a tail that may be the start of the end marker (from its \x1e on)
        const from = Math.max(cur.shown[key], acc.size - marker.length - 16);
        const rs = acc.peekFrom(from, acc.size - from).lastIndexOf(0x1e);
        upTo = rs >= 0 ? from + rs : acc.size;
      }
      if (upTo <= cur.shown[key]) return;
      listener(key === "out" ? "stdout" : "stderr", acc.peekFrom(cur.shown[key], upTo - cur.shown[key]));
      cur.shown[key] = upTo;
    };
    step(this.out, cur.stdout !== undefined, Buffer.from(`${RS}V:${cur.id}:E:`), "out");
    step(this.err, cur.stderr !== undefined, Buffer.from(`${RS}V:${cur.id}:E${RS}`), "err");
  }

  /**
   * Run one command; `timeoutSec` kills its whole process group in the guest. `onOutput`
   * gets its stdout and stderr as they arrive, while it runs.
   */
  run(command: string, timeoutSec?: number, onOutput?: OutputListener): Promise<CommandResult> {
    const job = this.queue.then(() => this.runNow(command, timeoutSec, onOutput));
    this.queue = job.catch(() => undefined);
    return job;
  }

  private runNow(command: string, timeoutSec?: number, onOutput?: OutputListener): Promise<CommandResult> {
    if (this.closed) return Promise.reject(this.closed);
    const id = randomBytes(8).toString("hex");
    // bounded: the timer below, when the caller gives a timeout (every Machine call does)
    return new Promise<CommandResult>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let timedOut = false;
      const running: Running = {
        id,
        pid: undefined,
        started: false,
        status: undefined,
        stdout: undefined,
        stderr: undefined,
        onOutput,
        shown: { out: 0, err: 0 },
        resolve: (r) => {
          clearTimeout(timer);
          if (timedOut) reject(new CommandTimeout(timeoutSec!, r));
          else resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.current = running;
      if (timeoutSec !== undefined && Number.isFinite(timeoutSec)) {
        timer = setTimeout(() => {
          timedOut = true;
          // Kill in the guest and let the command's end marker arrive, so the
          // shell stays in step; if even that does not come, give up on it.
          if (running.pid !== undefined) this.ctl.write(`kill ${running.pid}\n`);
          timer = setTimeout(() => {
            if (this.current === running) this.current = undefined;
            reject(new CommandTimeout(timeoutSec, { status: -1, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) }));
          }, 5000);
        }, timeoutSec * 1000);
      }
      this.cmd.write(`${id} ${encodeCommand(command)}\n`);
      this.pump();
    });
  }

  /** Kill the running command's process group in the guest (its result still arrives). */
  interrupt(): void {
    const pid = this.current?.pid;
    if (pid !== undefined) this.ctl.write(`kill ${pid}\n`);
  }

  /**
   * Confirm the shell is alive and in step (e.g. after a restore): ping with a nonce.
   * `setClock`: the guest also sets its clock to the host's, without a round trip of its
   * own (a restored guest's clock is behind by the time since the save); any later command
   * runs after the clock is set.
   */
  ping(timeoutMs = 5000, setClock = false): Promise<void> {
    const nonce = randomBytes(6).toString("hex");
    const job = this.queue.then(
      () =>
        // bounded: the timer below, and the backdoor closing (QEMU killed by a Ctrl-C while a
        // restored machine resumes must end the ping at once, not after its timeout)
        new Promise<void>((resolve, reject) => {
          if (this.closed) return reject(this.closed);
          const done = () => {
            clearTimeout(timer);
            this.off("pong", onPong);
            this.off("closed", onClosed);
          };
          const onPong = (n: string) => {
            if (n !== nonce) return;
            done();
            resolve();
          };
          const onClosed = (e: Error) => {
            done();
            reject(e);
          };
          const timer = setTimeout(() => {
            done();
            reject(new Error("the backdoor did not answer a ping"));
          }, timeoutMs);
          this.on("pong", onPong);
          this.once("closed", onClosed);
          this.cmd.write(`ping ${nonce}${setClock ? ` ${(Date.now() / 1000).toFixed(3)}` : ""}\n`);
        }),
    );
    this.queue = job.catch(() => undefined);
    return job;
  }
}
