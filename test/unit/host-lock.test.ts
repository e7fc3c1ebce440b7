import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HostSlots, tryHostLock } from "../../src/util/host-lock.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-host-lock-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Another process holding `file` with flock(1), as another vmrig would; resolves once it holds it. */
async function otherProcessHolds(file: string): Promise<{ release: () => void }> {
  const p = spawn("flock", ["--exclusive", file, "sh", "-c", "echo held; exec cat >/dev/null"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  await new Promise((r) => p.stdout.once("data", r));
  return { release: () => p.stdin.end() };
}

describe("host-wide locks (flock, not PIDs)", () => {
  it("is refused while another process holds the file, and taken once it lets go", async () => {
    const file = path.join(dir, "a.lock");
    const other = await otherProcessHolds(file);
    expect(await tryHostLock(file)).toBeUndefined();
    other.release();
    let release: (() => Promise<void>) | undefined;
    for (let i = 0; i < 50 && !release; i++) {
      release = await tryHostLock(file);
      if (!release) await new Promise((r) => setTimeout(r, 50));
    }
    expect(release).toBeTypeOf("function");
    // held by us now: another taker is refused
    expect(await tryHostLock(file)).toBeUndefined();
    await release!();
  });

  it("is released when the vmrig holding it is killed with SIGKILL", async () => {
    const file = path.join(dir, "b.lock");
    // a vmrig process (the built one) that takes the lock and says so
    const lib = new URL("../../dist/util/host-lock.js", import.meta.url).pathname;
    const holder = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { tryHostLock } = await import(${JSON.stringify(lib)}); const r = await tryHostLock(${JSON.stringify(file)}); console.log(r ? "held" : "busy"); setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    expect((await new Promise<Buffer>((r) => holder.stdout.once("data", r))).toString().trim()).toBe("held");
    expect(await tryHostLock(file)).toBeUndefined();
    holder.kill("SIGKILL");
    let release: (() => Promise<void>) | undefined;
    for (let i = 0; i < 50 && !release; i++) {
      release = await tryHostLock(file);
      if (!release) await new Promise((r) => setTimeout(r, 50));
    }
    expect(release, "the lock of a killed holder is free again").toBeTypeOf("function");
    await release!();
  });

  it("never lets more than `size` holders in at once, across waiters", async () => {
    const slots = new HostSlots(path.join(dir, "slots"), 2, "test");
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        const release = await slots.take();
        inside++;
        most = Math.max(most, inside);
        await new Promise((r) => setTimeout(r, 100));
        inside--;
        release();
      }),
    );
    expect(most).toBe(2);
  });

  it("counts the slots another process holds", async () => {
    const slotsDir = path.join(dir, "shared");
    fs.mkdirSync(slotsDir, { recursive: true });
    const other = await otherProcessHolds(path.join(slotsDir, "slot-0.lock"));
    const slots = new HostSlots(slotsDir, 2, "test", 1);
    const mine = await slots.take(); // slot-1
    await expect(slots.take()).rejects.toThrow(/waited 1 s for one of 2 test slots/);
    mine();
    other.release();
  });
});
