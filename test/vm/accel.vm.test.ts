import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { probeAccel } from "../../src/vm/accel.js";

const qemus = () => {
  try {
    return execFileSync("pgrep", ["-x", "qemu-system-x86"], { encoding: "utf8" }).split("\n").filter(Boolean);
  } catch {
    return [];
  }
};

describe("accelerator probe", () => {
  it("runs a guest under TCG, says why when an accelerator does not run one, and leaves no QEMU behind", async () => {
    const before = qemus();
    expect(await probeAccel("tcg")).toEqual({ ok: true });
    const kvm = await probeAccel("kvm");
    if (!kvm.ok) expect(kvm.why).toBeTruthy(); // here: /dev/kvm runs no guest, and the report says how it failed
    expect(qemus().filter((p) => !before.includes(p))).toEqual([]);
  });
});
