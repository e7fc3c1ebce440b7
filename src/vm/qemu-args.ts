import path from "node:path";
import { accelArgs } from "./accel.js";
import type { Accel } from "./guest.js";
import { macFor, type NicSpec } from "./nics.js";

export interface PortForward {
  from: "host" | "guest";
  proto: "tcp" | "udp";
  host: { address: string; port: number };
  guest: { address: string; port: number };
}

/** Everything that decides how one machine's QEMU is started. */
export interface VmSpec {
  kind?: "qemu";
  name: string;
  disk: string;
  kernel: string;
  initrd: string;
  memoryMiB: number;
  cores: number;
  nics: NicSpec[];
  accel: Accel;
  extraArgs: string[];
  /** where sockets and the disk overlays live (short: unix socket paths are limited to 107 bytes) */
  stateDir: string;
  /** the serial console log */
  consoleLog: string;
  /** keep the disk overlays between runs (NixOS -K) */
  keepState?: boolean;
  /** host↔guest forwards through a restricted user-mode NIC (virtualisation.forwardPorts) */
  forwardPorts?: PortForward[];
  /** sizes in MiB of blank extra disks (virtualisation.emptyDiskImages) */
  emptyDisks?: number[];
  resolution?: { x: number; y: number };
  /**
   * A desktop (services.xserver): virtio keyboard and tablet, as NixOS's VMs have. QEMU
   * sends keys to the virtio keyboard once its guest driver is up (PS/2 before that), and
   * the PS/2 keyboard drops keys under load, which under TCG is always.
   */
  desktopInput?: boolean;
  /** serve the display over VNC on this unix socket (interactive mode with virtualisation.graphics) */
  vncSocket?: string;
  /** appended to the kernel command line (boot.kernelParams) */
  kernelParams?: string[];
}

/** The display size when a spec names none (the default of `virtualisation.resolution`). */
const DEFAULT_RESOLUTION = { x: 1024, y: 768 } as const;

/** The display size of a VM. */
export function resolutionOf(spec: VmSpec): { x: number; y: number } {
  return spec.resolution ?? DEFAULT_RESOLUTION;
}

/** The user-mode NIC: the guest renames it eth0 (slot 0 of the MAC scheme) and gives it QEMU's default address. */
export const HOST_NIC = {
  id: "hostfwd",
  mac: "52:54:00:00:00:01",
  guestAddress: "10.0.2.15",
  net: "10.0.2.0/24",
} as const;

export type SocketName = "cmd" | "err" | "ctl" | "xfer" | "shell" | "con" | "qmp";
export const SOCKET_NAMES: readonly SocketName[] = ["cmd", "err", "ctl", "xfer", "shell", "con", "qmp"];

/** Where one QEMU process keeps its per-process files: they may differ between a save and a restore. */
export interface Layout {
  sockets: Record<SocketName, string>;
  /** one qcow2 overlay per drive: `root`, then `empty0`, `empty1`, … */
  drives: Record<string, string>;
  /** guest RAM in a file: shared while a boot snapshot is made (the template), private in a clone */
  ram?: { path: string; share: boolean };
  /** wait for an incoming migration stream (a restore) */
  incoming?: boolean;
}

export function socketPaths(spec: VmSpec, tag = ""): Record<SocketName, string> {
  const base = path.join(spec.stateDir, `${spec.name.slice(0, 20)}${tag}`);
  return Object.fromEntries(SOCKET_NAMES.map((k) => [k, `${base}.${k}`])) as Record<SocketName, string>;
}

/** The drive ids of a spec, root first. */
export function driveIds(spec: VmSpec): string[] {
  return ["root", ...(spec.emptyDisks ?? []).map((_, i) => `empty${i}`)];
}

// A guestfwd to a chardev (`-tcp:host:port`) is one connection QEMU opens at start-up and
// shares among every guest connection, so a host server that times out an idle connection
// answers the guest's first request with its error. `cmd:` connects afresh per guest
// connection; libslirp splits the command like a shell but runs no shell.
function forwardRule(f: PortForward): string {
  return f.from === "host"
    ? `hostfwd=${f.proto}:${f.host.address}:${f.host.port}-${HOST_NIC.guestAddress}:${f.guest.port}`
    : `guestfwd=tcp:${f.guest.address}:${f.guest.port}-cmd:socat STDIO TCP:${f.host.address}:${f.host.port}`;
}

export const KERNEL_CMDLINE =
  "console=tty1 console=ttyS0,115200 vmrig.root=/dev/vda panic=1 net.ifnames=0 loglevel=4 systemd.show_status=true";

/**
 * QEMU's command line. `machineType` is the versioned type (`pc-i440fx-7.2`), so a
 * saved state is only ever loaded by a QEMU that lays the machine out the same way.
 * Always started paused (-S): links can be set and a state loaded before the guest runs.
 */
export function qemuArgs(spec: VmSpec, layout: Layout, machineType: string): string[] {
  const { sockets } = layout;
  const args = [
    "-name",
    `${spec.name},debug-threads=on`,
    "-machine",
    layout.ram ? `${machineType},memory-backend=pc.ram` : machineType,
    ...accelArgs(spec.accel),
    "-m",
    String(spec.memoryMiB),
    ...(layout.ram
      ? [
          "-object",
          `memory-backend-file,id=pc.ram,size=${spec.memoryMiB}M,mem-path=${layout.ram.path},share=${layout.ram.share ? "on" : "off"}`,
        ]
      : []),
    "-smp",
    String(spec.cores),
    "-nodefaults",
    "-no-user-config",
    "-S",
    ...(layout.incoming ? ["-incoming", "defer"] : []),
    "-display",
    "none",
    ...(spec.vncSocket ? ["-vnc", `unix:${spec.vncSocket}`] : []),
    "-vga",
    "none",
    "-device",
    `VGA,id=video0,edid=on,xres=${resolutionOf(spec).x},yres=${resolutionOf(spec).y}`,
    "-kernel",
    spec.kernel,
    "-initrd",
    spec.initrd,
    "-append",
    [KERNEL_CMDLINE, ...(spec.kernelParams ?? [])].join(" "),
    "-drive",
    `file=${layout.drives.root},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap`,
    "-device",
    "virtio-blk-pci,drive=root",
    "-device",
    "virtio-serial-pci,id=vs",
  ];
  for (const port of ["cmd", "err", "ctl", "xfer", "shell"] as const) {
    args.push(
      "-chardev",
      `socket,id=${port},path=${sockets[port]}`,
      "-device",
      `virtserialport,bus=vs.0,chardev=${port},name=vmrig.${port}`,
    );
  }
  args.push(
    "-chardev",
    `socket,id=con,path=${sockets.con}`,
    "-serial",
    "chardev:con",
    "-chardev",
    `socket,id=qmp,path=${sockets.qmp}`,
    "-mon",
    "chardev=qmp,mode=control",
    ...(spec.desktopInput ? ["-device", "virtio-keyboard-pci", "-device", "virtio-tablet-pci"] : []),
    "-device",
    "virtio-rng-pci",
    // A new generation id on every QEMU start: a restored clone's kernel reseeds its
    // random number generator, so clones of one snapshot never share random bytes.
    "-device",
    "vmgenid,guid=auto",
  );
  for (const nic of spec.nics) {
    args.push(
      "-netdev",
      `vde,id=vlan${nic.slot},sock=${nic.switchPath}`,
      "-device",
      `virtio-net-pci,netdev=vlan${nic.slot},mac=${macFor(nic)}`,
    );
  }
  (spec.emptyDisks ?? []).forEach((_, i) => {
    args.push(
      "-drive",
      `file=${layout.drives[`empty${i}`]},if=none,id=empty${i},format=qcow2,cache=unsafe,discard=unmap`,
      "-device",
      `virtio-blk-pci,drive=empty${i},serial=empty${i}`,
    );
  });
  if (spec.forwardPorts?.length) {
    // restrict=on: the guest reaches nothing through it; the explicit forwards still work.
    args.push(
      "-netdev",
      `user,id=${HOST_NIC.id},restrict=on,net=${HOST_NIC.net},${spec.forwardPorts.map(forwardRule).join(",")}`,
      "-device",
      `virtio-net-pci,netdev=${HOST_NIC.id},id=${HOST_NIC.id}-nic,mac=${HOST_NIC.mac}`,
    );
  }
  // NixOS semantics: each entry is split on whitespace.
  for (const opt of spec.extraArgs) args.push(...opt.split(/\s+/).filter(Boolean));
  return args;
}
