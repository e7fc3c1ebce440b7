import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { Duplex } from "node:stream";
import { Backdoor } from "./backdoor.js";
import { ConsoleLog } from "./console.js";
import type { Guest } from "./guest.js";
import { NetNamespace } from "./netns.js";
import { macFor, type NicSpec } from "./nics.js";
import { childPids, exited, isRunning, rejectOnAbort, run, shellQuote, spawnOwned, within } from "../util/proc.js";
import { VmrigError, tail } from "../util/errors.js";
import { poll } from "../util/poll.js";

/** Everything that decides how one container is started. */
export interface ContainerSpec {
  kind: "nspawn";
  name: string;
  /** the image's root tree in the store: the read-only lower layer of the container's overlay */
  tree: string;
  nics: NicSpec[];
  /** where the run's per-machine files live */
  stateDir: string;
  /** the console log (what systemd and the container's /dev/console print) */
  consoleLog: string;
}

/** A container's writable layer: it lives for the whole run, like a VM's disk overlay. */
export interface ContainerDisk {
  upper: string;
  work: string;
}

/** systemd-nspawn's exit status when the container asked to reboot. */
const REBOOT_STATUS = 133;

/** The channels, as FIFO pairs the host holds open; nspawn binds their directory at /run/vmrig-ports. */
const FIFOS = [
  "vmrig.cmd.in",
  "vmrig.cmd.out",
  "vmrig.err.out",
  "vmrig.ctl.in",
  "vmrig.xfer.in",
  "vmrig.shell.in",
  "vmrig.shell.out",
] as const;
type Fifo = (typeof FIFOS)[number];

export interface ContainerLaunchOptions {
  disk: ContainerDisk;
  onConsoleLine?: (line: string) => void;
  signal?: AbortSignal | undefined;
}

/** How long a container may take to reach its shell (seconds even under load: no kernel boots). */
const START_DEADLINE_S = 300;

/**
 * Start a container and resolve once its backdoor answers. The container's root is an
 * overlay (the store's tree below, the run's writable layer above) mounted in a private
 * mount namespace that exists only for nspawn: nothing is mounted on the host, and the
 * mount is gone with the container.
 */
export async function launchContainer(spec: ContainerSpec, opts: ContainerLaunchOptions): Promise<Container> {
  const dir = path.join(spec.stateDir, `${spec.name}.ct`);
  const ports = path.join(dir, "ports");
  const root = path.join(dir, "root");
  fs.rmSync(ports, { recursive: true, force: true });
  for (const d of [ports, root, opts.disk.upper, opts.disk.work]) fs.mkdirSync(d, { recursive: true });
  await run("mkfifo", ["-m", "0600", ...FIFOS.map((f) => path.join(ports, f))]);
  // O_RDWR: opening never blocks, and neither side ever sees EOF while the other restarts.
  // The host only writes into `.in` (were it to read there too, it would take its own
  // requests before the guest could) and only reads from `.out`.
  const fifos = Object.fromEntries(
    FIFOS.map((f) => {
      const fd = fs.openSync(path.join(ports, f), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
      const toGuest = f.endsWith(".in");
      const s = new net.Socket({ fd, readable: !toGuest, writable: toGuest });
      s.on("error", () => undefined);
      return [f, s];
    }),
  ) as Record<Fifo, net.Socket>;
  const netns = await NetNamespace.create().catch((e: unknown) => {
    for (const s of Object.values(fifos)) s.destroy();
    throw e;
  });
  const consoleLog = new ConsoleLog(spec.consoleLog);
  if (opts.onConsoleLine) consoleLog.on("line", opts.onConsoleLine);
  const ct = new Container(spec, { root, ports, disk: opts.disk }, netns, fifos, consoleLog);
  try {
    for (const nic of spec.nics) await netns.addTap(`eth${nic.slot}`, macFor(nic), nic.switchPath);
    // bounded: `within(…, START_DEADLINE_S)` below
    const ready = new Promise<void>((resolve) => ct.backdoor.once("ready", () => resolve()));
    ct.launch();
    const died = new Promise<never>((_, reject) =>
      ct.once("exit", () =>
        reject(
          new VmrigError("the container exited while starting", {
            machine: spec.name,
            call: "start()",
            output: tail(consoleLog.all, 30),
            hint: "the console log in the result folder shows what systemd-nspawn said",
          }),
        ),
      ),
    );
    died.catch(() => undefined);
    const aborted = rejectOnAbort(opts.signal);
    // a container whose shell never answers (systemd stuck before it) fails here, not at the test's timeout
    const answered = await within(
      Promise.race([ready, died, aborted]).then(() => true),
      START_DEADLINE_S * 1000,
    );
    if (!answered)
      throw new VmrigError(`the container's shell did not answer within ${START_DEADLINE_S} s`, {
        machine: spec.name,
        call: "start()",
        output: tail(consoleLog.all, 30),
        hint: "the console log in the result folder shows how far systemd got",
      });
    ct.bootMs = Date.now() - ct.startedAt;
    return ct;
  } catch (e) {
    await ct.kill();
    throw e;
  }
}

/** One running container (systemd-nspawn with systemd as PID 1 inside), all channels connected. */
export class Container extends EventEmitter implements Guest {
  readonly kind = "nspawn";
  readonly name: string;
  readonly backdoor: Backdoor;
  readonly xfer: net.Socket;
  readonly shell: Duplex;
  readonly origin = "booted";
  readonly startedAt = Date.now();
  bootMs = 0;
  private child: ChildProcess | undefined;
  private stopping = false;
  private finished: Promise<void> | undefined;
  private readonly machineId = randomBytes(16).toString("hex");
  private readonly forwards: net.Server[] = [];

  constructor(
    readonly spec: ContainerSpec,
    private readonly files: { root: string; ports: string; disk: ContainerDisk },
    readonly netns: NetNamespace,
    private readonly fifos: Record<Fifo, net.Socket>,
    readonly console: ConsoleLog,
  ) {
    super();
    this.name = spec.name;
    this.backdoor = new Backdoor({
      requests: fifos["vmrig.cmd.in"],
      replies: fifos["vmrig.cmd.out"],
      stderr: fifos["vmrig.err.out"],
      control: fifos["vmrig.ctl.in"],
    });
    this.xfer = fifos["vmrig.xfer.in"];
    // shell()'s terminal: keystrokes into one FIFO, the screen out of the other
    this.shell = Duplex.from({ writable: fifos["vmrig.shell.in"], readable: fifos["vmrig.shell.out"] });
    this.shell.on("error", () => undefined);
    this.shell.resume(); // output with no shell() attached is dropped, never blocks the guest
    this.console.on("line", (line: string) => this.emit("console", line));
  }

  /** Start systemd-nspawn (again, after the container rebooted: same channels, same network). */
  launch(): void {
    const { root, ports, disk } = this.files;
    const lower = this.spec.tree;
    const mount = `mount -t overlay vmrig-${shellQuote(this.name)} -o ${shellQuote(`lowerdir=${lower},upperdir=${disk.upper},workdir=${disk.work}`)} ${shellQuote(root)}`;
    const nspawn = [
      "systemd-nspawn",
      "--quiet",
      `--directory=${root}`,
      `--machine=${this.name}`,
      "--register=no",
      "--keep-unit",
      `--uuid=${this.machineId}`,
      `--network-namespace-path=${this.netns.path}`,
      "--console=pipe",
      `--bind=${ports}:/run/vmrig-ports`,
      "--kill-signal=SIGRTMIN+3",
      // the network namespace is the container's own: it may configure it (addresses, nftables, netem)
      "--capability=CAP_NET_ADMIN",
      // nspawn does not take its container with it when it is killed (the container's PID 1
      // would be left to the host's init): PID 1 dies with nspawn, and its namespace with it.
      "/usr/bin/setpriv",
      "--pdeathsig",
      "KILL",
      "--",
      "/usr/lib/vmrig/init",
    ];
    // A private mount namespace, made for nspawn alone: the overlay never appears on the host.
    const child = spawnOwned(
      "unshare",
      ["--mount", "--propagation", "private", "sh", "-c", `${mount} && exec ${nspawn.map(shellQuote).join(" ")}`],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    this.child = child;
    child.stdout!.on("data", (d: Buffer) => this.console.write(d));
    child.stderr!.on("data", (d: Buffer) => this.console.write(d));
    child.stdin!.on("error", () => undefined);
    child.once("exit", (code) => {
      if (code === REBOOT_STATUS && !this.stopping) {
        this.console.write(Buffer.from("[vmrig: the container rebooted; starting it again]\n"));
        this.launch();
        return;
      }
      void this.finish();
    });
  }

  /**
   * Host TCP `hostPort` on 127.0.0.1 to the container's `guestPort` on its loopback: each
   * connection is piped through a socat started inside the container's network namespace.
   * The container still reaches nothing on the host.
   */
  /** Host TCP `hostPort` (0: any free one) to the container's `guestPort`; resolves to the host port. */
  async forwardPort(hostPort: number, guestPort: number): Promise<number> {
    const server = net.createServer((conn) => {
      const relay = spawnOwned(
        "nsenter",
        [`--net=${this.netns.path}`, "socat", "STDIO", `TCP:127.0.0.1:${guestPort}`],
        {
          stdio: ["pipe", "pipe", "ignore"],
        },
      );
      conn.on("error", () => relay.kill("SIGKILL"));
      relay.stdin!.on("error", () => undefined);
      conn.pipe(relay.stdin!);
      relay.stdout!.pipe(conn);
      relay.once("exit", () => conn.destroy());
      conn.once("close", () => relay.kill("SIGTERM"));
    });
    // bounded: a listen on 127.0.0.1 answers at once
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(hostPort, "127.0.0.1", () => resolve());
    });
    server.on("error", () => undefined);
    this.forwards.push(server);
    return (server.address() as net.AddressInfo).port;
  }

  /** Everything the container had, released once (when nspawn exits or is killed); resolves when its network is gone. */
  private finish(): Promise<void> {
    if (!this.finished) {
      for (const s of this.forwards) s.close();
      this.backdoor.close("the container exited");
      for (const s of Object.values(this.fifos)) s.destroy();
      void this.console.close();
      this.finished = this.netns.close();
      this.emit("exit");
    }
    return this.finished;
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  get running(): boolean {
    return (
      this.finished === undefined &&
      this.child !== undefined &&
      this.child.exitCode === null &&
      this.child.signalCode === null
    );
  }

  /** Carrier off on every vlan interface: addresses stay, nothing passes (as a VM's link down). */
  async setLinks(up: boolean): Promise<void> {
    for (const nic of this.spec.nics) await this.netns.setCarrier(`eth${nic.slot}`, up);
  }

  async waitForExit(): Promise<void> {
    if (this.finished !== undefined) return;
    // bounded: by the callers (`within` in power.ts)
    await new Promise<void>((resolve) => this.once("exit", () => resolve()));
  }

  /** Kill the container now (a crash): nspawn's SIGKILL takes its whole PID namespace with it. */
  async kill(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const leaders = childPids(child.pid!);
      child.kill("SIGKILL"); // our own child: it cannot ignore this
      await exited(child);
      // PID 1 gets its parent-death signal now; once it is gone, so is every process of its
      // namespace (the kernel kills and waits for them before PID 1's exit completes)
      await poll(
        5,
        () => ({ done: !leaders.some(isRunning) }),
        () => new Error("the container's processes outlived its PID 1 by 5 s"),
        10,
      ).catch(() => undefined); // finish() below still sweeps; the kernel ends them
    }
    await this.finish();
  }
}
