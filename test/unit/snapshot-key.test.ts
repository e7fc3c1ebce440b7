import { describe, expect, it } from "vitest";
import type { VmSpec } from "../../src/vm/qemu-args.js";
import { snapshotKey } from "../../src/vm/snapshot.js";

const info = { version: "QEMU emulator version 7.2.22", machineType: "pc-i440fx-7.2" };
const spec = (over: Partial<VmSpec> = {}): VmSpec => ({
  name: "client",
  disk: "/store/aaa-image-client/root.img",
  kernel: "/store/k/vmlinuz",
  initrd: "/store/k/initrd",
  memoryMiB: 1024,
  cores: 2,
  nics: [{ slot: 1, vlan: 1, nodeIndex: 1, switchPath: "/tmp/vmrig-run1/vlan1" }],
  accel: "tcg",
  extraArgs: [],
  stateDir: "/tmp/vmrig-run1",
  consoleLog: "/results/client-console.log",
  ...over,
});

describe("boot snapshot keys", () => {
  it("are the same for the same machine in two runs (other state dirs, sockets, results)", () => {
    expect(snapshotKey(spec(), info)).toBe(
      snapshotKey(
        spec({
          stateDir: "/tmp/vmrig-run2",
          consoleLog: "/elsewhere/c.log",
          nics: [{ slot: 1, vlan: 1, nodeIndex: 1, switchPath: "/tmp/vmrig-run2/vlan1" }],
        }),
        info,
      ),
    );
  });

  it("differ for another image, QEMU, memory, cores, MAC, kernel command line, extra options or blank disks", () => {
    const k = snapshotKey(spec(), info);
    const others = [
      snapshotKey(spec({ disk: "/store/bbb-image-client/root.img" }), info), // same name and index, other packages
      snapshotKey(spec(), { ...info, version: "QEMU emulator version 10.0.2" }),
      snapshotKey(spec({ memoryMiB: 2048 }), info),
      snapshotKey(spec({ cores: 1 }), info),
      snapshotKey(spec({ nics: [{ slot: 1, vlan: 1, nodeIndex: 2, switchPath: "/tmp/vmrig-run1/vlan1" }] }), info),
      snapshotKey(spec({ kernelParams: ["quiet"] }), info),
      snapshotKey(spec({ extraArgs: ["-device virtio-balloon"] }), info),
      snapshotKey(spec({ emptyDisks: [64] }), info),
      snapshotKey(spec({ accel: "kvm" }), info),
    ];
    expect(new Set([k, ...others]).size).toBe(others.length + 1);
  });
});
