import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Accel } from "./guest.js";
import { qemuInfo } from "./qemu-info.js";
import { within } from "../util/proc.js";

/**
 * A 64 KiB BIOS whose reset vector writes "K" to the serial port and halts:
 * if that byte arrives, the accelerator really runs guest code. (On some hosts
 * /dev/kvm opens and KVM_CREATE_VM succeeds, yet a vCPU never runs.)
 */
function probeBios(): Buffer {
  const bios = Buffer.alloc(65536, 0xf4); // hlt
  // at 0xFFFF0: mov dx,0x3f8; mov al,'K'; out dx,al; hlt; jmp $-1
  Buffer.from([0xba, 0xf8, 0x03, 0xb0, 0x4b, 0xee, 0xf4, 0xeb, 0xfd]).copy(bios, 0xfff0);
  return bios;
}

export interface ProbeResult {
  ok: boolean;
  /** why not: QEMU's stderr, or what the guest printed before the time ran out */
  why?: string;
}

/**
 * Does `accel` run a guest here? With a kernel, boot it with the CPU flags real
 * VMs use until it prints its banner (a BIOS that runs is not enough: on some
 * hosts KVM runs real mode but dies on the kernel's first MSR write).
 */
export function probeAccel(accel: Accel, kernel?: string, timeoutMs = kernel ? 8000 : 3000): Promise<ProbeResult> {
  if (accel === "kvm" && !fs.existsSync("/dev/kvm"))
    return Promise.resolve({ ok: false, why: "/dev/kvm does not exist" });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-probe-"));
  const bios = path.join(dir, "bios.bin");
  fs.writeFileSync(bios, probeBios());
  const guest = kernel
    ? ["-kernel", kernel, "-append", "console=ttyS0 panic=-1", "-m", "256"]
    : ["-bios", bios, "-m", "16"];
  const expect = kernel ? "Linux version" : "K";
  // bounded: the timer below
  return new Promise((resolve) => {
    const child = spawn(
      "setpriv",
      [
        "--pdeathsig",
        "KILL",
        "--",
        "qemu-system-x86_64",
        ...accelArgs(accel),
        "-machine",
        "pc",
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        ...guest,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let seen = "";
    let stderr = "";
    let done = false;
    // bounded: `within(exited, 5000)` below
    const exited = new Promise<void>((r) => child.once("close", () => r()));
    const finish = (result: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      // Resolve only once this QEMU is gone: a KVM guest spinning in the kernel must not
      // still hold a core while the next probe (or VM) runs.
      void within(exited, 5000).then(() => {
        fs.rmSync(dir, { recursive: true, force: true });
        resolve(result);
      });
    };
    const timer = setTimeout(
      () =>
        finish({
          ok: false,
          why: `no ${JSON.stringify(expect)} within ${timeoutMs} ms${stderr ? `; QEMU said: ${stderr.trim()}` : seen ? `; the guest printed: ${seen.trim().slice(-120)}` : ""}`,
        }),
      timeoutMs,
    );
    child.stdout.on("data", (d: Buffer) => {
      seen = (seen + d.toString("latin1")).slice(-200);
      if (seen.includes(expect)) finish({ ok: true });
    });
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-500)));
    child.on("error", (e) => finish({ ok: false, why: e.message }));
    child.on("exit", (code, sig) => {
      // let the streams drain: the banner or QEMU's complaint may still be in flight
      setTimeout(
        () =>
          finish(
            seen.includes(expect)
              ? { ok: true }
              : { ok: false, why: `QEMU exited (${sig ?? `status ${code}`})${stderr ? `: ${stderr.trim()}` : ""}` },
          ),
        50,
      );
    });
  });
}

/** The accelerator and CPU flags every VM (and the probe) uses. */
export function accelArgs(accel: Accel): string[] {
  // Under multi-threaded TCG (QEMU 7.2) the trixie kernel's SLUB double-faults
  // on cmpxchg16b in about half of all boots; without cx16 it takes its locked path.
  // rdrand seeds the kernel's CRNG before the second CPU starts: without it the CRNG
  // becomes ready seconds into userspace and the kernel live-patches get_random_u64()
  // while the other vCPU runs it, which MTTCG sometimes gets wrong (an "Oops: int3").
  // tb-size caps the translation cache: ~180 MiB less RSS per VM at no cost.
  return accel === "kvm"
    ? ["-accel", "kvm", "-cpu", "host"]
    : ["-accel", "tcg,tb-size=64", "-cpu", "qemu64,-cx16,+rdrand"];
}

let cached: Promise<Accel> | undefined;

/** Where a probe's verdict is remembered between processes (the driver keeps it in its cache). */
export interface AccelMemo {
  read(key: string): Accel | undefined;
  write(key: string, accel: Accel): void;
}

/**
 * `auto`: KVM if the test's kernel really boots under it, else TCG. Where KVM is broken
 * the probe waits its whole timeout (8 s), so its verdict is remembered in `memo` until
 * the host reboots, for this kernel and this QEMU.
 */
export function resolveAccel(wanted: "auto" | Accel, kernel?: string, memo?: AccelMemo): Promise<Accel> {
  if (wanted !== "auto") return Promise.resolve(wanted);
  cached ??= (async () => {
    let key = "";
    try {
      const bootId = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
      const kvm = fs.statSync("/dev/kvm", { throwIfNoEntry: false });
      key = JSON.stringify({
        bootId,
        kernel,
        kvm: kvm ? [kvm.ino, kvm.mode, kvm.ctimeMs] : null,
        qemu: (await qemuInfo()).version,
      });
    } catch {
      key = "";
    }
    const known = key ? memo?.read(key) : undefined;
    if (known) return known;
    const accel = (await probeAccel("kvm", kernel)).ok ? "kvm" : "tcg";
    if (key) memo?.write(key, accel);
    return accel;
  })();
  return cached;
}
