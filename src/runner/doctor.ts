import fs from "node:fs";
import path from "node:path";
import { probeAccel } from "../vm/accel.js";
import { qemuInfo } from "../vm/qemu-info.js";
import { storeDir } from "../image/store.js";
import { gib, storeStatus } from "./gc.js";
import { commandExists } from "../util/proc.js";

function findKernel(): string | undefined {
  const dir = storeDir();
  const boot = fs.existsSync(dir) ? fs.readdirSync(dir).find((e) => /^[0-9a-f]+-boot$/.test(e)) : undefined;
  return boot ? path.join(dir, boot, "vmlinuz") : undefined;
}

interface Check {
  what: string;
  command: string;
  pkg: string;
  /** only some tests need it: missing is reported, not fatal */
  optional?: boolean;
}

const CHECKS: Check[] = [
  { what: "QEMU", command: "qemu-system-x86_64", pkg: "qemu-system-x86" },
  { what: "qemu-img", command: "qemu-img", pkg: "qemu-utils" },
  { what: "mmdebstrap (builds Debian images)", command: "mmdebstrap", pkg: "mmdebstrap" },
  { what: "vde_switch (virtual networks)", command: "vde_switch", pkg: "vde2" },
  { what: "mkfs.ext4 -d (disk images)", command: "mkfs.ext4", pkg: "e2fsprogs" },
  { what: "cpio (initrd)", command: "cpio", pkg: "cpio" },
  { what: "xz (kernel modules)", command: "xz", pkg: "xz-utils" },
  { what: "setpriv (child processes die with vmrig)", command: "setpriv", pkg: "util-linux" },
  { what: "unshare (private mounts while installing packages)", command: "unshare", pkg: "util-linux" },
  { what: "openssl (password hashes)", command: "openssl", pkg: "openssl" },
  { what: "socat (virtualisation.forwardPorts from the guest)", command: "socat", pkg: "socat" },
  { what: "systemd-nspawn (containers)", command: "systemd-nspawn", pkg: "systemd-container", optional: true },
  { what: "nsenter (containers' network namespaces)", command: "nsenter", pkg: "util-linux" },
  { what: "vde_plug2tap (containers on vlans)", command: "vde_plug2tap", pkg: "vde2" },
  { what: "ip (containers' network namespaces)", command: "ip", pkg: "iproute2" },
  {
    what: "tesseract (OCR, for tests with enableOCR)",
    command: "tesseract",
    pkg: "tesseract-ocr tesseract-ocr-eng",
    optional: true,
  },
  { what: "flock (cold-boot slots shared by every vmrig on one cache)", command: "flock", pkg: "util-linux" },
  { what: "ffmpeg (vmrig run --video)", command: "ffmpeg", pkg: "ffmpeg", optional: true },
];

/** Print what is there and what is missing; true if vmrig can run. */
export async function doctor(print: (l: string) => void = (l) => process.stdout.write(l + "\n")): Promise<boolean> {
  let ok = true;
  const missing: string[] = [];
  for (const c of CHECKS) {
    const present = commandExists(c.command);
    print(`${present ? "ok     " : c.optional ? "absent " : "MISSING"} ${c.what} (${c.command})`);
    if (!present) {
      if (!c.optional) ok = false;
      missing.push(c.pkg);
    }
  }
  if (process.getuid?.() !== 0) {
    print("MISSING root: building images (mmdebstrap --mode=root, chroot) needs root for now");
    ok = false;
  }
  const store = await storeStatus();
  print(
    `${store.totalKib > store.budget.kib ? "over   " : "ok     "} store: ${gib(store.totalKib)} in ${store.entries} entries, budget ${gib(store.budget.kib)} (${store.budget.from}); kept within it after every run, least recently used first`,
  );
  if (missing.length) print(`\nto install: apt-get install -y ${[...new Set(missing)].join(" ")}`);
  if (commandExists("qemu-system-x86_64")) {
    const q = await qemuInfo();
    print(`ok      ${q.version}, machine type ${q.machineType}`);
    const shm = fs.existsSync("/dev/shm") && fs.statSync("/dev/shm").isDirectory();
    print(
      `${shm ? "ok     " : "no     "} boot snapshots: RAM template file + x-ignore-shared migration, restored by a private copy-on-write mapping` +
        (shm ? "" : " (no /dev/shm: first boots cannot be saved; every start boots)"),
    );
    const kernel = findKernel();
    if (!kernel)
      print(
        "(no Debian kernel built yet: KVM is probed with a minimal BIOS only; `vmrig run` probes with the real kernel)",
      );
    const kvmProbe = await probeAccel("kvm", kernel);
    // once more if it fails: on a busy shared host one boot to the banner can be slow
    let tcgProbe = await probeAccel("tcg", kernel);
    if (!tcgProbe.ok) tcgProbe = await probeAccel("tcg", kernel, 20_000);
    const kvm = kvmProbe.ok;
    const tcg = tcgProbe.ok;
    print(
      `${kvm ? "ok     " : "no     "} KVM (probed by running a guest${kvm ? "" : `; /dev/kvm may exist but does not run one: ${kvmProbe.why ?? "?"}`})`,
    );
    print(`${tcg ? "ok     " : "BROKEN "} TCG software emulation${tcg ? "" : ` (${tcgProbe.why ?? "?"})`}`);
    print(
      `\nvmrig will use: ${kvm ? "kvm" : tcg ? "tcg (first boots of 10–20 s per VM, then restores in under a second)" : "nothing: QEMU cannot run guests"}`,
    );
    if (!tcg) ok = false;
  }
  return ok;
}
