import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { packageLayer, type BaseLayer } from "../../src/image/debian.js";
import { VmrigError } from "../../src/util/errors.js";

// A package layer whose apt cannot run (a base without apt): the real cp/unshare/chroot
// path, failing the same way twice.
describe("package layer", () => {
  it("tries apt once more from a clean copy, then fails with the lines that explain it and keeps apt's whole output", async () => {
    process.env.VMRIG_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-pkgs-"));
    const rootfs = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-fakebase-"));
    for (const d of ["proc", "dev", "sys", "etc", "usr/sbin"]) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
    const base: BaseLayer = { hash: "fake", path: rootfs, built: false, rootfs, kernel: "", initrd: "" };
    const progress: string[] = [];
    const e = await packageLayer(base, ["hello"], (m) => progress.push(m)).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(VmrigError);
    const err = e as VmrigError;
    expect(err.output).toMatch(/chroot: failed to run command/);
    const saved = /apt's whole output: (\S+)/.exec(err.hint ?? "")?.[1];
    expect(saved && fs.readFileSync(saved, "utf8")).toMatch(/chroot: failed to run command/);
    expect(progress.filter((p) => p.includes("once more from a clean copy"))).toHaveLength(1);
    expect(
      // (its lock file stays: it is only the thing locked, and gc removes it)
      fs
        .readdirSync(path.join(process.env.VMRIG_CACHE_DIR, "store"))
        .filter((n) => n.includes("packages") && !n.endsWith(".lock")),
    ).toEqual([]);
    fs.rmSync(rootfs, { recursive: true, force: true });
    fs.rmSync(process.env.VMRIG_CACHE_DIR, { recursive: true, force: true });
  });
});
