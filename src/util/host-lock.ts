import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { VmrigError } from "./errors.js";
import { pollFor } from "./poll.js";
import { Semaphore, type Slots } from "./semaphore.js";

/**
 * An exclusive flock(2) on `file`, held by a `flock` helper process for as long as its
 * stdin stays open. The kernel drops the lock when the helper exits, and the helper exits
 * when we do (its stdin reaches end of file), even after a SIGKILL. A lock is then never
 * judged by a PID: it holds across PID namespaces sharing one cache (containers on one CI
 * volume), and a reused PID after a reboot cannot make a stale lock look held.
 * Resolves to the release function, or undefined when another process holds the lock.
 */
export async function tryHostLock(file: string): Promise<(() => Promise<void>) | undefined> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // `flock --nonblock` exits 1 at once when the lock is held; otherwise it runs the shell,
  // which says so and then waits on stdin.
  const helper = spawn(
    "flock",
    ["--nonblock", "--exclusive", "--conflict-exit-code", "75", file, "sh", "-c", "echo held; exec cat >/dev/null"],
    {
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  const outcome = await new Promise<"held" | "busy" | Error>((resolve) => {
    let stderr = "";
    helper.stdout.on("data", () => resolve("held"));
    helper.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    helper.once("error", (e) => resolve(e));
    helper.once("exit", (code) =>
      resolve(code === 75 ? "busy" : new Error(`flock ${file} exited with ${code}: ${stderr.trim()}`)),
    );
  });
  if (outcome === "busy") return undefined;
  if (outcome instanceof Error) {
    helper.kill("SIGKILL");
    throw new VmrigError(`could not lock ${file}: ${outcome.message}`, {
      hint: "vmrig needs flock (util-linux) and a cache on a file system with locks",
    });
  }
  // The lock must not keep Node alive, and it goes when the helper does.
  unref(helper);
  // the lock is free once the helper has exited, not when it is told to: a caller that takes
  // the same lock next (this process, at once) must not find it still held
  const exited =
    helper.exitCode !== null || helper.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => helper.once("exit", () => resolve()));
  return () => {
    // (referenced again: an unreferenced child's exit would not keep Node alive for the
    // awaiting caller, and Node would end mid-run with nothing left to do)
    helper.ref();
    helper.stdin?.end();
    return exited;
  };
}

/** Does some process hold `file`'s lock right now? Makes no lock file: where there is none, nobody holds one. */
export async function hostLockHeld(file: string): Promise<boolean> {
  if (!fs.existsSync(file)) return false;
  const release = await tryHostLock(file);
  await release?.();
  return release === undefined;
}

function unref(helper: ChildProcess): void {
  helper.unref();
  for (const s of [helper.stdin, helper.stdout, helper.stderr]) (s as unknown as { unref?: () => void })?.unref?.();
}

/**
 * At most `size` holders at once across every process sharing `dir` (a semaphore of
 * flock'd slot files); inside one process, waiters queue in order before they ask the
 * host. `take()` waits at most `timeoutS`, and says what it waited for.
 */
export class HostSlots implements Slots {
  private readonly local: Semaphore;

  constructor(
    private readonly dir: string,
    readonly size: number,
    private readonly what: string,
    private readonly timeoutS = 3600,
  ) {
    this.local = new Semaphore(size);
  }

  async take(): Promise<() => void> {
    const releaseLocal = await this.local.take();
    try {
      const releaseHost = await pollFor(
        this.timeoutS,
        async () => {
          for (let i = 0; i < this.size; i++) {
            const r = await tryHostLock(path.join(this.dir, `slot-${i}.lock`));
            if (r) return r;
          }
          return undefined;
        },
        () =>
          new VmrigError(`waited ${this.timeoutS} s for one of ${this.size} ${this.what} slots (${this.dir})`, {
            hint: "other vmrig processes sharing this cache hold every slot for that long: look for a stuck one (`pgrep -a qemu`)",
          }),
        250,
      );
      return () => {
        void releaseHost();
        releaseLocal();
      };
    } catch (e) {
      releaseLocal();
      throw e;
    }
  }
}
