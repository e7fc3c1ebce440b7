import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { beforeEach, describe, expect, it } from "vitest";
import { canonicalJson, createEntryUnlessBusy, ensureEntry, findEntry, hashInputs } from "../../src/image/store.js";
import { sweepLeftovers } from "../../src/session/leftovers.js";
import { tryHostLock } from "../../src/util/host-lock.js";

const root = path.resolve(import.meta.dirname, "../..");

beforeEach(() => {
  process.env.VMRIG_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-store-"));
});

describe("content-addressed store", () => {
  it("hashes inputs independent of key order, and differently for different inputs", () => {
    expect(canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] })).toBe('{"a":[2,{"c":4,"d":3}],"b":1}');
    expect(hashInputs({ a: 1, b: 2 })).toBe(hashInputs({ b: 2, a: 1 }));
    expect(hashInputs({ packages: ["nginx"] })).not.toBe(hashInputs({ packages: ["nginx", "curl"] }));
  });

  it("builds an entry once, even when asked concurrently", async () => {
    let builds = 0;
    const build = async (dir: string) => {
      builds++;
      await new Promise((r) => setTimeout(r, 100));
      fs.writeFileSync(path.join(dir, "out"), "x");
    };
    const [a, b] = await Promise.all([ensureEntry("t", { k: 1 }, build), ensureEntry("t", { k: 1 }, build)]);
    const c = await ensureEntry("t", { k: 1 }, build);
    expect(builds).toBe(1);
    expect(a.path).toBe(b.path);
    expect(c.built).toBe(false);
    expect(fs.readFileSync(path.join(c.path, "out"), "utf8")).toBe("x");
  });

  it("finds an entry whose file was cut short, says so, and builds it again", async () => {
    let builds = 0;
    const build = (dir: string) => {
      builds++;
      fs.writeFileSync(path.join(dir, "root.img"), Buffer.alloc(4096, builds));
      return Promise.resolve();
    };
    const said: string[] = [];
    const notes = { what: "m's disk image", progress: (l: string) => said.push(l) };
    const first = await ensureEntry("image-m", { k: "cut" }, build, notes);
    // a disk that filled while the image was copied in
    fs.truncateSync(path.join(first.path, "root.img"), 1000);
    const second = await ensureEntry("image-m", { k: "cut" }, build, notes);
    expect(second.built).toBe(true);
    expect(said).toEqual([
      "m's disk image in the store is damaged (root.img is 1000 bytes, 4096 when built): building it again",
    ]);
    expect(fs.statSync(path.join(second.path, "root.img")).size).toBe(4096);
    // whole again: used as it is
    expect((await ensureEntry("image-m", { k: "cut" }, build, notes)).built).toBe(false);
    fs.rmSync(path.join(second.path, "root.img"));
    await ensureEntry("image-m", { k: "cut" }, build, notes);
    expect(said[1]).toContain("(root.img is missing)");
    expect(builds).toBe(3);
    expect(fs.readdirSync(path.dirname(second.path)).filter((e) => e.includes(".stale-"))).toEqual([]);
  });

  it("leaves no entry behind when a build fails, and takes over a dead process's lock", async () => {
    await expect(ensureEntry("t", { k: 2 }, () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    const dir = path.join(process.env.VMRIG_CACHE_DIR!, "store");
    expect(fs.readdirSync(dir).filter((e) => !e.endsWith(".lock"))).toEqual([]);
    const hash = hashInputs({ k: 3 });
    fs.writeFileSync(path.join(dir, `${hash}-t.lock`), "999999999"); // no such PID
    const e = await ensureEntry("t", { k: 3 }, () => Promise.resolve());
    expect(e.built).toBe(true);
  });

  it("makes an entry only-if-free (boot snapshots): a second maker gets undefined at once, a dead maker's lock is taken over", async () => {
    let release: (() => void) | undefined;
    const slow = createEntryUnlessBusy("abc", "snapshot-m", (tmp) => {
      fs.writeFileSync(path.join(tmp, "state"), "s");
      return new Promise<void>((r) => (release = r));
    });
    // (until the first maker is building: on a loaded host taking the lock may take a while)
    while (!release) await new Promise((r) => setTimeout(r, 20));
    expect(await createEntryUnlessBusy("abc", "snapshot-m", () => Promise.resolve())).toBeUndefined();
    release();
    const made = await slow;
    expect(made).toBe(findEntry("abc", "snapshot-m"));
    expect(fs.readFileSync(path.join(made!, "state"), "utf8")).toBe("s");
    const dir = path.join(process.env.VMRIG_CACHE_DIR!, "store");
    fs.writeFileSync(path.join(dir, "def-snapshot-m.lock"), "999999999");
    expect(await createEntryUnlessBusy("def", "snapshot-m", () => Promise.resolve())).toBe(
      path.join(dir, "def-snapshot-m"),
    );
    await expect(createEntryUnlessBusy("ghi", "snapshot-m", () => Promise.reject(new Error("no")))).rejects.toThrow(
      "no",
    );
    expect(findEntry("ghi", "snapshot-m")).toBeUndefined();
  });

  it("waits for a build another process holds the lock of, and never takes a held lock over, whatever its PID says", async () => {
    const dir = path.join(process.env.VMRIG_CACHE_DIR!, "store");
    fs.mkdirSync(dir, { recursive: true });
    const hash = hashInputs({ k: 4 });
    // a lock file naming a PID that is not running here (another PID namespace), but held
    const lock = path.join(dir, `${hash}-t.lock`);
    fs.writeFileSync(lock, "999999999");
    const held = (await tryHostLock(lock))!;
    let waited = false;
    const built = ensureEntry("t", { k: 4 }, () => Promise.resolve(), { what: "t", progress: () => (waited = true) });
    await new Promise((r) => setTimeout(r, 600));
    expect(waited).toBe(true);
    expect(findEntry(hash, "t")).toBeUndefined();
    await held();
    expect((await built).built).toBe(true);
  });

  it("sweeps a half-built entry only when nobody holds its lock", async () => {
    const dir = path.join(process.env.VMRIG_CACHE_DIR!, "store");
    fs.mkdirSync(path.join(dir, "aaa-t.tmp-999999999"), { recursive: true });
    fs.mkdirSync(path.join(dir, "bbb-t.tmp-999999998"), { recursive: true });
    const busy = (await tryHostLock(path.join(dir, "bbb-t.lock")))!;
    const removed = await sweepLeftovers();
    expect(removed).toContain(path.join(dir, "aaa-t.tmp-999999999"));
    expect(fs.existsSync(path.join(dir, "bbb-t.tmp-999999998"))).toBe(true);
    await busy();
  });

  it("sweeps the list of store entries a killed run held, and keeps a live holder's", async () => {
    const dir = path.join(process.env.VMRIG_CACHE_DIR!, "in-use");
    fs.mkdirSync(dir, { recursive: true });
    // what a SIGKILLed holder leaves: its list, and a lock file nobody holds
    fs.writeFileSync(path.join(dir, "999-dead.json"), JSON.stringify(["/x/store/e"]));
    fs.writeFileSync(path.join(dir, "999-dead.lock"), "");
    fs.writeFileSync(path.join(dir, "998-live.json"), JSON.stringify(["/x/store/f"]));
    const live = (await tryHostLock(path.join(dir, "998-live.lock")))!;
    try {
      expect(await sweepLeftovers()).toContain(path.join(dir, "999-dead.json"));
      expect(fs.readdirSync(dir).sort()).toEqual(["998-live.json", "998-live.lock"]);
    } finally {
      await live();
    }
  });

  it("builds an entry once when two vmrig processes in different PID namespaces ask for it on one cache", async () => {
    // Each builder runs in a PID namespace of its own (unshare --pid --fork), where both may
    // have the same PID: a lock judged by PIDs would let both build, or take a live one over.
    const store = path.join(root, "dist/image/store.js");
    const builder = (who: string) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const script = `
          import fs from "node:fs";
          import path from "node:path";
          const { ensureEntry } = await import(${JSON.stringify(store)});
          const e = await ensureEntry("shared", { k: "pidns" }, async (tmp) => {
            fs.appendFileSync(path.join(process.env.VMRIG_CACHE_DIR, "builds"), ${JSON.stringify(who)} + " pid " + process.pid + "\\n");
            await new Promise((r) => setTimeout(r, 1500));
            fs.writeFileSync(path.join(tmp, "by"), ${JSON.stringify(who)});
          });
          console.log(JSON.stringify({ path: e.path, built: e.built }));
        `;
        const child = spawn(
          "unshare",
          ["--pid", "--fork", "--mount-proc", "node", "--input-type=module", "-e", script],
          {
            env: process.env,
          },
        );
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr.on("data", (d: Buffer) => (out += d.toString()));
        child.on("close", (code) => resolve({ code, out }));
      });
    const [a, b] = await Promise.all([builder("a"), builder("b")]);
    expect(a.code, a.out).toBe(0);
    expect(b.code, b.out).toBe(0);
    const ra = JSON.parse(a.out) as { path: string; built: boolean };
    const rb = JSON.parse(b.out) as { path: string; built: boolean };
    expect(ra.path).toBe(rb.path);
    // exactly one of them built it; the other waited and used it
    expect([ra.built, rb.built].sort()).toEqual([false, true]);
    const builds = fs.readFileSync(path.join(process.env.VMRIG_CACHE_DIR!, "builds"), "utf8").trim().split("\n");
    expect(builds).toHaveLength(1);
    // both ran as PID 1 of their namespace, so a PID would not have told them apart
    expect(builds[0]).toMatch(/pid 1$/);
    expect(fs.readFileSync(path.join(ra.path, "by"), "utf8")).toBe(ra.built ? "a" : "b");
  });
});
