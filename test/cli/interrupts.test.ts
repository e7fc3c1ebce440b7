import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { descendants, livePids } from "../vm/helpers.js";
import { isRunning } from "../../src/util/proc.js";
import { pollFor } from "../../src/util/poll.js";
import { cli as cliPath, runCli, spawnCli, spawnRunning, writeTests, type RunningCli } from "./helpers.js";

// Faults on real processes (#23), black box: Ctrl-C and SIGKILL of vmrig at the moments
// that hold the most (apt in a chroot, a cold boot, a restore). Each ends with a clear
// message and leaves no process, mount, run directory or half-written store entry.

const store = path.join(process.env.VMRIG_CACHE_DIR ?? path.join(os.homedir(), ".cache/vmrig"), "store");
const runDirs = () => fs.readdirSync(os.tmpdir()).filter((e) => /^vmrig-[A-Za-z0-9]{6}$/.test(e));
const mounts = () => fs.readFileSync("/proc/self/mountinfo", "utf8");

function start(name: string, body: string, extra: string[] = []): { cli: RunningCli; dir: string } {
  const dir = writeTests({ [name]: body });
  const file = path.join(dir, `${name}.vmrig.ts`);
  return { cli: spawnCli(["run", file, "--rerun", "--output-dir", path.join(dir, "results"), ...extra], dir), dir };
}

/** A QEMU's command line (its words joined by spaces), "" for anything else or once it is gone. */
function cmdline(pid: number): string {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return argv[0]!.startsWith("qemu-system") ? argv.join(" ") : "";
  } catch {
    return "";
  }
}

/** Signal the CLI; its exit code and how long it took to exit. */
async function interrupt(cli: RunningCli, signal: NodeJS.Signals): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  cli.child.kill(signal);
  const code = await cli.exited();
  return { code, ms: Date.now() - t0 };
}

/** Wait (up to 10 s) until none of `pids` runs: the kernel takes a moment to end a killed tree. */
async function gone(pids: number[]): Promise<number[]> {
  for (let i = 0; i < 100 && pids.some(isRunning); i++) await new Promise((r) => setTimeout(r, 100));
  return pids.filter(isRunning);
}

describe("apt in a chroot", () => {
  // a package set no other test installs, so apt runs here; nothing of it is ever kept
  const aptTest = (name: string, pkg: string) =>
    start(
      name,
      `{ name: "${name}", nodes: { m: { environment: { systemPackages: ["${pkg}"] } } }, async testScript() {} }`,
    );
  const apt = /apt: (downloading|setting up)/;

  it("Ctrl-C stops it at once: no apt, dpkg or mount left, no entry, exit 1", async () => {
    const before = { apt: livePids("apt-get"), dpkg: livePids("dpkg") };
    const { cli } = aptTest("ctrlc-apt", "sl");
    await cli.waitFor(apt, 300_000);
    const { code, ms } = await interrupt(cli, "SIGINT");
    expect(code).toBe(1);
    expect(cli.output()).toContain("interrupted while starting the machines (SIGINT)");
    expect(ms).toBeLessThan(10_000); // a hang check, not a benchmark
    expect(livePids("apt-get").filter((p) => !before.apt.includes(p))).toEqual([]);
    expect(livePids("dpkg").filter((p) => !before.dpkg.includes(p))).toEqual([]);
    expect(mounts()).not.toContain(store);
    // the build's temporary directory went with it
    expect(fs.readdirSync(store).filter((e) => e.includes(`.tmp-${cli.child.pid}`))).toEqual([]);
  });

  it("SIGKILL of vmrig takes apt with it; the next run sweeps the half-built entry, whose lock the kernel let go", async () => {
    const before = { apt: livePids("apt-get"), dpkg: livePids("dpkg") };
    const { cli, dir } = aptTest("killed-apt", "cowsay");
    await cli.waitFor(apt, 300_000);
    const tree = descendants(cli.child.pid!);
    expect(tree.length).toBeGreaterThan(2);
    await interrupt(cli, "SIGKILL");
    expect(await gone(tree)).toEqual([]);
    expect(livePids("apt-get").filter((p) => !before.apt.includes(p))).toEqual([]);
    expect(livePids("dpkg").filter((p) => !before.dpkg.includes(p))).toEqual([]);
    expect(mounts()).not.toContain(store);
    const half = fs.readdirSync(store).filter((e) => e.includes(`.tmp-${cli.child.pid}`));
    expect(half).toHaveLength(1); // never published: no entry takes its place
    const next = runCli(["run", path.join(dir, "nothing-here")], dir);
    expect(next.output).toContain(path.join(store, half[0]!));
    expect(fs.existsSync(path.join(store, half[0]!))).toBe(false);
  });
});

describe("Ctrl-C while machines start", () => {
  it("during a cold boot: QEMU stopped at once, exit 1, nothing left", async () => {
    const before = runDirs();
    const { cli } = start(
      "ctrlc-boot",
      `{ name: "ctrlc-boot", nodes: { m: {} }, async testScript({ m }) { await m.succeed("true"); } }`,
      ["--no-snapshots"],
    );
    // QEMU is up and the guest is booting (a cold boot takes tens of seconds under TCG)
    const qemu = await pollFor(
      300,
      // (not the accelerator probe's short-lived QEMU: the machine's, by its name)
      () => Promise.resolve(descendants(cli.child.pid!).find((p) => cmdline(p).includes("-name m,"))),
      () => new Error(`no QEMU started:\n${cli.output()}`),
      100,
    );
    await new Promise((r) => setTimeout(r, 2000));
    expect(isRunning(qemu)).toBe(true);
    expect(cli.output()).not.toMatch(/booted in/);
    const tree = descendants(cli.child.pid!);
    const { code, ms } = await interrupt(cli, "SIGINT");
    expect(code).toBe(1);
    expect(cli.output()).toMatch(/interrupted.*\(SIGINT\)/);
    expect(ms).toBeLessThan(10_000);
    expect(await gone(tree)).toEqual([]);
    expect(runDirs()).toEqual(before);
  });

  it("during a checkpoint restore: QEMU stopped at once, exit 1, nothing left", async () => {
    const before = runDirs();
    const { cli } = start(
      "ctrlc-restore",
      `{ name: "ctrlc-restore", nodes: { m: {} }, async testScript({ m, snapshot, restore }) {
        await m.succeed("true");
        await snapshot("s");
        m.log("saved");
        for (;;) await restore("s"); // most of the time is a restore: Ctrl-C lands in one
      } }`,
    );
    await cli.waitFor(/saved/, 300_000);
    await new Promise((r) => setTimeout(r, 3000));
    const tree = descendants(cli.child.pid!);
    const { code, ms } = await interrupt(cli, "SIGINT");
    expect(code).toBe(1);
    expect(cli.output()).toContain("interrupted (SIGINT)");
    expect(ms).toBeLessThan(10_000);
    expect(await gone(tree)).toEqual([]);
    expect(runDirs()).toEqual(before);
  });
});

describe("a disk that fills during a build", () => {
  it("fails naming the full disk, publishes nothing, and leaves no build process or mount", async () => {
    // a cache of its own on a small file system, in a mount namespace of the test's own
    // (the mount goes with it): the first build, Debian's base layer, runs out of space
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-full-"));
    const dir = writeTests({ full: `{ name: "full", nodes: { m: {} }, async testScript() {} }` });
    const before = livePids("mmdebstrap");
    const wrapped = spawnRunning(
      "unshare",
      [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        // (after the run, what its store holds: looked at before the file system goes)
        `mount -t tmpfs -o size=96m vmrig-full "$VMRIG_CACHE_DIR" || exit 9
        node "$0" run "$1" --rerun --output-dir "$2"; rc=$?
        echo "STORE: $(ls -A "$VMRIG_CACHE_DIR/store" | tr '\\n' ' ')"; exit $rc`,
        cliPath,
        path.join(dir, "full.vmrig.ts"),
        path.join(dir, "results"),
      ],
      dir,
      { ...process.env, VMRIG_CACHE_DIR: cache },
    );
    const code = await wrapped.exited();
    const out = wrapped.output();
    expect(code).toBe(1);
    expect(out).toMatch(/No space left on device/);
    expect(out).toContain("hint: the disk is full");
    // nothing published, nothing half-built left: at most the entry's lock file
    const held = /STORE: (.*)/.exec(out)?.[1]?.trim().split(" ").filter(Boolean);
    expect(held?.filter((e) => !e.endsWith(".lock"))).toEqual([]);
    expect(livePids("mmdebstrap").filter((p) => !before.includes(p))).toEqual([]);
    expect(mounts()).not.toContain(cache);
    // the tmpfs is gone with its namespace: what is left on the host is the empty mount point
    expect(fs.readdirSync(cache)).toEqual([]);
    fs.rmSync(cache, { recursive: true, force: true });
  });
});

describe("a run whose machine is never started", () => {
  it("exits as soon as it is done: the restore prepared in the background is stopped, and no timer of it keeps vmrig alive", () => {
    const dir = writeTests({
      unused: `{ name: "unused", nodes: { m: {} }, async testScript({ log }) { log("done"); } }`,
    });
    const t0 = Date.now();
    const r = runCli(["run", path.join(dir, "unused.vmrig.ts"), "--rerun", "--output-dir", path.join(dir, "out")], dir);
    expect(r.status, r.output).toBe(0);
    // a hang check, not a benchmark: a stopped launch's 60 s connect deadline once kept it alive
    expect(Date.now() - t0).toBeLessThan(40_000);
  });
});
