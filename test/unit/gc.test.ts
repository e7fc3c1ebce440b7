import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gc } from "../../src/runner/gc.js";
import { recordRoot } from "../../src/image/roots.js";
import { recordPass } from "../../src/runner/cache.js";
import type { NodeImage } from "../../src/image/image.js";
import { storeDir } from "../../src/image/store.js";
import { tryHostLock } from "../../src/util/host-lock.js";

let saved: string | undefined;
let tmp: string;

beforeEach(() => {
  saved = process.env.VMRIG_CACHE_DIR;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-gc-"));
  process.env.VMRIG_CACHE_DIR = path.join(tmp, "cache");
});
afterEach(() => {
  if (saved === undefined) delete process.env.VMRIG_CACHE_DIR;
  else process.env.VMRIG_CACHE_DIR = saved;
  fs.rmSync(tmp, { recursive: true, force: true });
});

function entry(name: string, ageHours: number, kib = 8): string {
  const p = path.join(storeDir(), name);
  fs.mkdirSync(p, { recursive: true });
  fs.writeFileSync(path.join(p, "data"), Buffer.alloc(kib * 1024));
  const t = new Date(Date.now() - ageHours * 3600_000);
  fs.utimesSync(p, t, t);
  return p;
}

const image = (entries: string[]): NodeImage => ({
  name: "n",
  format: "disk",
  root: "",
  kernel: "",
  initrd: "",
  hash: "",
  entries,
});

describe("vmrig gc", () => {
  it("keeps what the latest build of an existing test uses, and recent or busy entries; removes the rest", async () => {
    const base = entry("aaa-base-trixie", 48);
    const pkgs = entry("bbb-packages", 48);
    const img = entry("ccc-image-server", 48);
    entry("ddd-image-server", 48, 64); // an older build of the same test
    const gone = entry("eee-image-client", 48); // used only by a deleted test
    entry("fff-image-fresh", 0); // younger than the grace period
    entry("ggg-image-building", 48);
    // another process is building it: it holds the entry's lock
    const building = await tryHostLock(path.join(storeDir(), "ggg-image-building.lock"));
    const file = path.join(tmp, "a.vmrig.ts");
    const deleted = path.join(tmp, "deleted.vmrig.ts");
    fs.writeFileSync(file, "");
    fs.writeFileSync(deleted, "");
    recordRoot(file, "a", { server: image([base, pkgs, img]) });
    recordRoot(deleted, "d", { client: image([base, gone]) });
    fs.rmSync(deleted);
    recordPass("k1", { name: "a", file, passedAt: "2026-01-01T00:00:00.000Z", durationMs: 1 });
    recordPass("k2", { name: "a", file, passedAt: "2026-02-01T00:00:00.000Z", durationMs: 1 });
    recordPass("k3", { name: "d", file: deleted, passedAt: "2026-02-01T00:00:00.000Z", durationMs: 1 });

    const logs = path.join(process.env.VMRIG_CACHE_DIR!, "logs");
    fs.mkdirSync(logs, { recursive: true });
    fs.writeFileSync(path.join(logs, "old-apt.log"), "E: old");
    fs.writeFileSync(path.join(logs, "new-apt.log"), "E: new");
    const weekAgo = new Date(Date.now() - 8 * 24 * 3600_000);
    fs.utimesSync(path.join(logs, "old-apt.log"), weekAgo, weekAgo);

    const dry = await gc({ dryRun: true });
    expect(dry.removedLogs).toBe(1);
    expect(dry.removedEntries.map((e) => e.name)).toEqual(["ddd-image-server", "eee-image-client"]);
    expect(fs.existsSync(gone)).toBe(true);

    const r = await gc();
    expect(r.removedEntries.map((e) => e.name)).toEqual(["ddd-image-server", "eee-image-client"]);
    expect(r.removedEntries[0]!.kib).toBeGreaterThanOrEqual(64);
    expect(r.keptEntries).toBe(5);
    expect(r.tests).toBe(1);
    expect(r.droppedRoots).toEqual([deleted]);
    expect(r.removedResults).toBe(2);
    expect(r.removedLogs).toBe(1);
    expect(fs.readdirSync(logs)).toEqual(["new-apt.log"]);
    expect(fs.readdirSync(storeDir()).sort()).toEqual([
      "aaa-base-trixie",
      "bbb-packages",
      "ccc-image-server",
      "fff-image-fresh",
      "ggg-image-building",
      "ggg-image-building.lock",
    ]);
    expect(fs.readdirSync(path.join(process.env.VMRIG_CACHE_DIR!, "results"))).toEqual(["k2.json"]);
    await building!();
  });
});

describe("the store's budget", () => {
  it("removes the least recently used entries until the store fits, never one a running test holds or one being made", async () => {
    const { defaultBudgetKib, enforceBudget, storeBudget } = await import("../../src/image/gc.js");
    const { holdEntries } = await import("../../src/image/in-use.js");
    const { findEntry } = await import("../../src/image/store.js");
    const oldest = entry("a1-oldest", 50, 64);
    const held = entry("a2-held", 40, 64);
    const building = entry("a3-building", 30, 64);
    const older = entry("a4-older", 20, 64);
    const used = entry("a5-used-now", 10, 64);
    const fresh = entry("a6-fresh", 0.1, 64);
    // a running test holds one entry; another vmrig is making one (its lock is held)
    const hold = await holdEntries([held]);
    const lock = await tryHostLock(`${building}.lock`);
    // one old entry is used again now: that makes it the most recently used
    expect(findEntry("a5", "used-now")).toBe(used);
    try {
      // 6 entries of ≥64 KiB; a budget of 200 KiB keeps three at most
      const r = await enforceBudget(200);
      expect(r.removed.map((e) => e.name)).toEqual(["a1-oldest", "a4-older"]);
      for (const p of [held, building, used, fresh]) expect(fs.existsSync(p)).toBe(true);
      expect(fs.existsSync(oldest) || fs.existsSync(older)).toBe(false);
      // still over: the rest is held, being made, or used within the hour
      expect(r.afterKib).toBeGreaterThan(200);
      // once the holder lets go, its entry may go too
      hold.release();
      await lock?.(); // (resolves once the lock is free)
      const again = await enforceBudget(200);
      expect(again.removed.map((e) => e.name)).toEqual(["a2-held", "a3-building"]);
      expect(again.afterKib).toBeLessThanOrEqual(200);
    } finally {
      hold.release();
      await lock?.();
    }
    process.env.VMRIG_STORE_BUDGET = "3G";
    expect((await storeBudget()).kib).toBe(3 * 1024 * 1024);
    process.env.VMRIG_STORE_BUDGET = "lots";
    await expect(storeBudget()).rejects.toThrow(/VMRIG_STORE_BUDGET=lots: not a size/);
    delete process.env.VMRIG_STORE_BUDGET;
    // the default: the store plus the free space, less a reserve of 10 % (at least 10 GiB),
    // and never under 1 GiB (a disk with less than 10 GiB free, as CI's may be)
    const GIB = 1024 * 1024;
    expect(defaultBudgetKib(5 * GIB)).toBe(GIB);
    expect(defaultBudgetKib(50 * GIB)).toBe(40 * GIB);
    expect(defaultBudgetKib(200 * GIB)).toBe(180 * GIB);
    const st = fs.statfsSync(storeDir());
    const free = (st.bavail * st.bsize) / 1024; // (this test's store is a few KiB)
    // within 1 GiB: other processes write to the disk meanwhile
    expect(Math.abs((await storeBudget()).kib - defaultBudgetKib(free))).toBeLessThan(GIB);
  });

  it("forgets a holder that was killed: its entries count as unused at once", async () => {
    const { entriesInUse } = await import("../../src/image/in-use.js");
    const dir = path.join(process.env.VMRIG_CACHE_DIR!, "in-use");
    fs.mkdirSync(dir, { recursive: true });
    // what a SIGKILLed holder leaves: its list, and a lock file nobody holds
    fs.writeFileSync(path.join(dir, "999-dead.json"), JSON.stringify(["/x/store/e"]));
    fs.writeFileSync(path.join(dir, "999-dead.lock"), "");
    expect([...(await entriesInUse())]).toEqual([]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});
