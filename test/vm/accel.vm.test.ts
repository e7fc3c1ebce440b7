import { describe, expect, it } from "vitest";
import { probeAccel } from "../../src/vm/accel.js";
import { qemuPids } from "./helpers.js";

describe("accelerator probe", () => {
  it("runs a guest under TCG, says why when an accelerator does not run one, and leaves no QEMU behind", async () => {
    const before = qemuPids();
    expect(await probeAccel("tcg")).toEqual({ ok: true });
    const kvm = await probeAccel("kvm");
    if (!kvm.ok) expect(kvm.why).toBeTruthy(); // here: /dev/kvm runs no guest, and the report says how it failed
    expect(qemuPids().filter((p) => !before.includes(p))).toEqual([]);
  });
});
