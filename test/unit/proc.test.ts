import { describe, expect, it } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { isRunning, run, withCancellation } from "../../src/util/proc.js";
import { VmrigError } from "../../src/util/errors.js";

describe("host commands", () => {
  it("reports a failure with the output in the order it came, and the lines that explain it even when far from the end", async () => {
    // the pause: two pipes carry stdout and stderr, so "the order it came" needs the lines to come apart in time
    const script =
      'echo "setting up x"; echo "dpkg: error processing package x (--configure)" >&2; sleep 0.2; for i in $(seq 50); do echo "line $i"; done; exit 1';
    const e = await run("sh", ["-c", script], { explains: /^dpkg: /, hint: "apt failed" }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(VmrigError);
    const err = e as VmrigError;
    expect(err.status).toBe(1);
    expect(err.output).toContain("setting up x\ndpkg: error processing package x (--configure)");
    expect(err.output).toContain("line 50");
    expect(err.output).not.toContain("line 3\n");
    expect(err.message).toContain("hint: apt failed");
  });

  it("names a full disk as such", async () => {
    const e = (await run("sh", ["-c", "echo 'write: No space left on device' >&2; exit 1"]).catch(
      (x: unknown) => x,
    )) as VmrigError;
    expect(e.hint).toMatch(/the disk is full: `vmrig gc`/);
  });

  it("stops a command that runs past its deadline, and says which command and how far it got", async () => {
    const t0 = Date.now();
    const e = (await run("sh", ["-c", "echo started; sleep 29"], { timeoutS: 0.3 }).catch(
      (x: unknown) => x,
    )) as VmrigError;
    expect(e).toBeInstanceOf(VmrigError);
    expect(e.message).toContain("host command did not finish within 0.3 s: stopped");
    expect(e.command).toBe("sh -c 'echo started; sleep 29'");
    expect(e.output).toContain("started");
    expect(Date.now() - t0).toBeLessThan(5000);
    // the shell's child went with it (its process group)
    expect(hostSleep(29)).toEqual([]);
  });

  it("stops a command at once when its scope is cancelled, and says it was interrupted", async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort("SIGINT"), 200);
    const e = (await withCancellation(ac.signal, () => run("sleep", ["30"])).catch((x: unknown) => x)) as VmrigError;
    expect(e).toBeInstanceOf(VmrigError);
    expect(e.message).toContain("interrupted (SIGINT): sleep was stopped");
    expect(Date.now() - t0).toBeLessThan(5000);
    // and nothing more starts in a cancelled scope
    await expect(withCancellation(ac.signal, () => run("true", []))).rejects.toThrow(/interrupted/);
  });

  it("runs a build step isolated: its mounts are private, and cancelling it kills every process it started", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-isolated-"));
    const ac = new AbortController();
    const script = `mount -t tmpfs vmrig-probe "${dir}" && (sleep 300 & echo $! > "${dir}/../${path.basename(dir)}.pid"; wait)`;
    const running = withCancellation(ac.signal, () => run("sh", ["-c", script], { isolate: true }));
    const pidFile = `${dir}.pid`;
    for (let i = 0; i < 100 && !fs.existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 50));
    // the grandchild runs, and its tmpfs is not mounted on the host
    const grandchild = Number(fs.readFileSync(pidFile, "utf8"));
    expect(grandchild).toBeGreaterThan(0);
    expect(fs.readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(dir);
    ac.abort("test");
    await expect(running).rejects.toThrow(/interrupted/);
    // (the PID in the file is the namespace's; the host's sleep is found by its command line)
    for (let i = 0; i < 50 && hostSleep().length; i++) await new Promise((r) => setTimeout(r, 100));
    expect(hostSleep()).toEqual([]);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(pidFile, { force: true });
  });
});

/** PIDs of host processes running `sleep SECS` (300 unless given) that a test started. */
function hostSleep(secs = 300): number[] {
  return fs
    .readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, "utf8") === `sleep\u0000${secs}\u0000` && isRunning(Number(p));
      } catch {
        return false;
      }
    })
    .map(Number);
}
