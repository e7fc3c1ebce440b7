import { run } from "../util/proc.js";

export interface QemuInfo {
  /** `QEMU emulator version 7.2.22 (Debian …)`: a saved state fits only the exact build */
  version: string;
  /** the versioned machine type the `pc` alias stands for in this QEMU, e.g. `pc-i440fx-7.2` */
  machineType: string;
}

let cached: Promise<QemuInfo> | undefined;

/** The host's QEMU: its exact version and its versioned `pc` machine type (asked once per process). */
export function qemuInfo(): Promise<QemuInfo> {
  cached ??= (async () => {
    const version = (await run("qemu-system-x86_64", ["--version"])).stdout.split("\n")[0]!.trim();
    const machines = (await run("qemu-system-x86_64", ["-machine", "help"])).stdout;
    // "pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)"
    const alias = /^pc\s+.*\(alias of (\S+)\)/m.exec(machines)?.[1];
    return { version, machineType: alias ?? "pc" };
  })();
  cached.catch(() => (cached = undefined));
  return cached;
}
