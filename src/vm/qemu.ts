import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { accelArgs } from "./accel.js";
import { Backdoor } from "./backdoor.js";
import { ConsoleLog } from "./console.js";
import { Qmp } from "./qmp.js";
import { exited, run, spawnOwned, terminate, within } from "../util/proc.js";
import { VmrigError, tail } from "../util/errors.js";

export type Accel = "kvm" | "tcg";

export interface NicSpec {
  /** position in the node's vlan list, 1-based: the guest sees eth<slot> */
  slot: number;
  vlan: number;
  /** the vlan switch's socket directory */
  switchPath: string;
  /** node index (1-based, name order), for a stable MAC */
  nodeIndex: number;
}

export interface VmSpec {
  name: string;
  disk: string;
  kernel: string;
  initrd: string;
  memoryMiB: number;
  cores: number;
  nics: NicSpec[];
  accel: Accel;
  extraArgs: string[];
  /** where sockets and the disk overlay live (short: unix socket paths are limited to 107 bytes) */
  stateDir: string;
  /** the serial console log */
  consoleLog: string;
  /** keep the disk overlay between runs (NixOS -K) */
  keepState?: boolean;
  /** host↔guest forwards through a restricted user-mode NIC (virtualisation.forwardPorts) */
  forwardPorts?: PortForward[];
  /** sizes in MiB of blank extra disks (virtualisation.emptyDiskImages) */
  emptyDisks?: number[];
  resolution?: { x: number; y: number };
  /** serve the display over VNC on this unix socket (interactive mode with virtualisation.graphics) */
  vncSocket?: string;
  /** appended to the kernel command line (boot.kernelParams) */
  kernelParams?: string[];
}

export interface PortForward {
  from: "host" | "guest";
  proto: "tcp" | "udp";
  host: { address: string; port: number };
  guest: { address: string; port: number };
}

/** The user-mode NIC: the guest renames it eth0 (slot 0 of the MAC scheme) and gives it QEMU's default address. */
export const HOST_NIC = { id: "hostfwd", mac: "52:54:00:00:00:01", guestAddress: "10.0.2.15", net: "10.0.2.0/24" } as const;

// A guestfwd to a chardev (`-tcp:host:port`) is one connection QEMU opens at start-up and
// shares among every guest connection, so a host server that times out an idle connection
// answers the guest's first request with its error. `cmd:` connects afresh per guest
// connection; libslirp splits the command like a shell but runs no shell.
function forwardRule(f: PortForward): string {
  return f.from === "host"
    ? `hostfwd=${f.proto}:${f.host.address}:${f.host.port}-${HOST_NIC.guestAddress}:${f.guest.port}`
    : `guestfwd=tcp:${f.guest.address}:${f.guest.port}-cmd:socat STDIO TCP:${f.host.address}:${f.host.port}`;
}

export const emptyDiskPath = (spec: VmSpec, i: number) => path.join(spec.stateDir, `${spec.name}-empty${i}.qcow2`);

export function macFor(nic: NicSpec): string {
  const hex = (n: number) => (n & 0xff).toString(16).padStart(2, "0");
  return `52:54:00:${hex(nic.slot)}:${hex(nic.vlan)}:${hex(nic.nodeIndex)}`;
}

export type SocketName = "cmd" | "err" | "ctl" | "xfer" | "shell" | "con" | "qmp";

export function qemuArgs(spec: VmSpec, sockets: Record<SocketName, string>, overlay: string): string[] {
  const accel = accelArgs(spec.accel);
  const args = [
    "-name",
    `${spec.name},debug-threads=on`,
    "-machine",
    "pc",
    ...accel,
    "-m",
    String(spec.memoryMiB),
    "-smp",
    String(spec.cores),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    ...(spec.vncSocket ? ["-vnc", `unix:${spec.vncSocket}`] : []),
    "-vga",
    "none",
    "-device",
    `VGA,id=video0,edid=on,xres=${spec.resolution?.x ?? 1024},yres=${spec.resolution?.y ?? 768}`,
    "-kernel",
    spec.kernel,
    "-initrd",
    spec.initrd,
    "-append",
    ["console=tty1 console=ttyS0,115200 vmrig.root=/dev/vda panic=1 net.ifnames=0 loglevel=4 systemd.show_status=true", ...(spec.kernelParams ?? [])].join(" "),
    "-drive",
    `file=${overlay},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap`,
    "-device",
    "virtio-blk-pci,drive=root",
    "-device",
    "virtio-serial-pci,id=vs",
    "-chardev",
    `socket,id=cmd,path=${sockets.cmd}`,
    "-device",
    "virtserialport,bus=vs.0,chardev=cmd,name=vmrig.cmd",
    "-chardev",
    `socket,id=err,path=${sockets.err}`,
    "-device",
    "virtserialport,bus=vs.0,chardev=err,name=vmrig.err",
    "-chardev",
    `socket,id=ctl,path=${sockets.ctl}`,
    "-device",
    "virtserialport,bus=vs.0,chardev=ctl,name=vmrig.ctl",
    "-chardev",
    `socket,id=xfer,path=${sockets.xfer}`,
    "-device",
    "virtserialport,bus=vs.0,chardev=xfer,name=vmrig.xfer",
    "-chardev",
    `socket,id=shell,path=${sockets.shell}`,
    "-device",
    "virtserialport,bus=vs.0,chardev=shell,name=vmrig.shell",
    "-chardev",
    `socket,id=con,path=${sockets.con}`,
    "-serial",
    "chardev:con",
    "-chardev",
    `socket,id=qmp,path=${sockets.qmp}`,
    "-mon",
    "chardev=qmp,mode=control",
    "-device",
    "virtio-rng-pci",
  ];
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
      `file=${emptyDiskPath(spec, i)},if=none,id=empty${i},format=qcow2,cache=unsafe,discard=unmap`,
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

/** Listen on a unix socket and resolve with the one connection QEMU makes to it. */
function acceptOne(sockPath: string): { server: net.Server; connection: Promise<net.Socket> } {
  fs.rmSync(sockPath, { force: true });
  const server = net.createServer();
  const connection = new Promise<net.Socket>((resolve, reject) => {
    server.once("connection", (s) => {
      server.close();
      resolve(s);
    });
    server.once("error", reject);
  });
  server.listen(sockPath);
  return { server, connection };
}

/**
 * One QEMU process. vmrig listens on every socket and QEMU connects to them,
 * so nothing the guest prints can be lost to a connect race.
 */
export class Vm extends EventEmitter {
  private child: ChildProcess | undefined;
  private servers: net.Server[] = [];
  qmp: Qmp | undefined;
  backdoor: Backdoor | undefined;
  console: ConsoleLog | undefined;
  private stderr = "";
  /** the serial console, for input (sendConsole) */
  consoleSocket: net.Socket | undefined;
  /** a raw byte channel into the guest (port vmrig.xfer), for copyFromHost */
  xfer: net.Socket | undefined;
  /** the terminal of an interactive shell (port vmrig.shell), for Machine.shell() */
  shell: net.Socket | undefined;
  /** QEMU start → backdoor answering, in ms */
  bootMs: number | undefined;
  readonly overlay: string;

  constructor(readonly spec: VmSpec) {
    super();
    this.overlay = path.join(spec.stateDir, `${spec.name}.qcow2`);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Start QEMU and resolve once the guest's backdoor has announced itself. */
  async start(signal?: AbortSignal): Promise<void> {
    const { spec } = this;
    fs.mkdirSync(spec.stateDir, { recursive: true });
    if (!(spec.keepState && fs.existsSync(this.overlay))) {
      await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", spec.disk, "-F", "raw", this.overlay]);
    }
    for (const [i, mib] of (spec.emptyDisks ?? []).entries()) {
      const disk = emptyDiskPath(spec, i);
      if (!(spec.keepState && fs.existsSync(disk))) await run("qemu-img", ["create", "-q", "-f", "qcow2", disk, `${mib}M`]);
    }
    const sock = (k: string) => path.join(spec.stateDir, `${spec.name.slice(0, 20)}.${k}`);
    const sockets: Record<SocketName, string> = {
      cmd: sock("cmd"),
      err: sock("err"),
      ctl: sock("ctl"),
      xfer: sock("xfer"),
      shell: sock("shell"),
      con: sock("con"),
      qmp: sock("qmp"),
    };
    const accepts = Object.fromEntries(Object.entries(sockets).map(([k, p]) => [k, acceptOne(p)])) as Record<
      SocketName,
      ReturnType<typeof acceptOne>
    >;
    this.servers = Object.values(accepts).map((a) => a.server);
    await Promise.all(this.servers.map((s) => new Promise((r) => (s.listening ? r(undefined) : s.once("listening", r)))));

    this.console = new ConsoleLog(spec.consoleLog);
    this.console.on("line", (line: string) => this.emit("console", line));
    this.stderr = "";
    const started = Date.now();
    const child = spawnOwned("qemu-system-x86_64", qemuArgs(spec, sockets, this.overlay), { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    child.stderr!.on("data", (d: Buffer) => {
      this.stderr += d.toString();
      this.console?.write(Buffer.from(`[qemu] ${d.toString()}`));
    });
    const died = new Promise<never>((_, reject) => {
      child.once("exit", (code, sig) => {
        reject(
          new VmrigError(`QEMU exited during boot (${sig ?? `exit status ${code}`})`, {
            machine: spec.name,
            call: "start()",
            output: tail(this.stderr || this.console?.all || "", 30),
            hint: "the console log in the result folder shows how far the boot got",
          }),
        );
      });
    });
    died.catch(() => undefined);
    child.once("exit", () => this.onExit());

    const aborted = new Promise<never>((_, reject) => {
      if (!signal) return;
      const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    const race = <T>(p: Promise<T>) => Promise.race([p, died, aborted]);

    const [cmd, err, ctl, xfer, shell, con, qmpSock] = await race(
      Promise.all([
        accepts.cmd.connection,
        accepts.err.connection,
        accepts.ctl.connection,
        accepts.xfer.connection,
        accepts.shell.connection,
        accepts.con.connection,
        accepts.qmp.connection,
      ]),
    );
    con.on("data", (d: Buffer) => this.console?.write(d));
    con.on("error", () => undefined);
    xfer.on("error", () => undefined);
    shell.on("error", () => undefined);
    shell.resume(); // output with no shell() attached is dropped, never blocks the guest
    this.shell = shell;
    this.consoleSocket = con;
    this.xfer = xfer;
    this.qmp = new Qmp(qmpSock);
    this.backdoor = new Backdoor(cmd, err, ctl);
    const ready = new Promise<void>((resolve) => this.backdoor!.once("ready", () => resolve()));
    await race(this.qmp.handshake());
    await race(ready);
    this.bootMs = Date.now() - started;
  }

  private onExit(): void {
    this.backdoor?.close("QEMU exited");
    this.qmp?.close();
    for (const s of this.servers) s.close();
    this.servers = [];
    void this.console?.close();
    this.emit("exit", this.child?.exitCode, this.child?.signalCode);
  }

  /** Resolves when QEMU has exited. */
  async waitForExit(): Promise<void> {
    if (this.child) await exited(this.child);
  }

  /** Stop QEMU now (QMP quit, then signals) and remove its sockets; the overlay stays for the caller. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (this.running) {
      await within(this.qmp?.execute("quit").catch(() => undefined) ?? Promise.resolve(), 1000);
      await within(exited(child), 2000);
      await terminate(child, 2000);
    }
    await exited(child);
  }
}
