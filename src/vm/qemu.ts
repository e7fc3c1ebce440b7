import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import net from "node:net";
import { Backdoor } from "./backdoor.js";
import { ConsoleLog } from "./console.js";
import type { Guest } from "./guest.js";
import { qemuArgs, SOCKET_NAMES, type Layout, type SocketName, type VmSpec } from "./qemu-args.js";
import { qemuInfo } from "./qemu-info.js";
import { Qmp } from "./qmp.js";
import { exited, rejectOnAbort, shellQuote, spawnOwned, terminate, within } from "../util/proc.js";
import { VmrigError, tail } from "../util/errors.js";
import { poll } from "../util/poll.js";

/** A save or load of a machine's state: ~0.2 s for a boot snapshot, seconds for a checkpoint's whole RAM. */
const MIGRATION_TIMEOUT_S = 300;

/** From QEMU's start to its sockets connected and QMP greeted (~0.1 s when well). */
const CONNECT_S = 60;

/** Listen on a unix socket and resolve with the one connection QEMU makes to it. */
function acceptOne(sockPath: string): { server: net.Server; connection: Promise<net.Socket> } {
  fs.rmSync(sockPath, { force: true });
  const server = net.createServer();
  // bounded: `within(…, CONNECT_S)` in launchQemu
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

export interface LaunchOptions {
  layout: Layout;
  /** the Machine call this launch is part of, for errors ("start()" unless given) */
  call?: string;
  signal?: AbortSignal | undefined;
  /** keep the vlan links down from the first instruction on (an isolated boot, for a boot snapshot) */
  linksDown?: boolean;
  /** every line the serial console prints, from the first on */
  onConsoleLine?: (line: string) => void;
  /** load this saved state instead of booting (the layout must have `incoming`) */
  restore?: {
    state: string;
    bootId: string;
    console?: string;
    origin: string;
    /** bring the vlan links up (a boot snapshot is saved with them down); a checkpoint keeps what it saved */
    linksUp: boolean;
    /** return still paused; `resumeRestored()` lets it run (several machines resumed at one instant) */
    paused?: boolean;
  };
}

/**
 * Start QEMU and resolve with a running VM once its backdoor answers: after a boot, when
 * the guest's shell announces itself; after a restore, when it answers a ping. vmrig
 * listens on every socket and QEMU connects to them, so nothing the guest prints is lost
 * to a connect race.
 */
export async function launchQemu(spec: VmSpec, opts: LaunchOptions): Promise<QemuVm> {
  const { layout } = opts;
  fs.mkdirSync(spec.stateDir, { recursive: true });
  const info = await qemuInfo();
  const accepts = Object.fromEntries(SOCKET_NAMES.map((k) => [k, acceptOne(layout.sockets[k])])) as Record<
    SocketName,
    ReturnType<typeof acceptOne>
  >;
  const servers = Object.values(accepts).map((a) => a.server);
  const closeServers = () => servers.forEach((s) => s.close());
  // bounded: a listen on a local socket answers at once
  await Promise.all(servers.map((s) => new Promise((r) => (s.listening ? r(undefined) : s.once("listening", r)))));

  const consoleLog = new ConsoleLog(spec.consoleLog);
  if (opts.onConsoleLine) consoleLog.on("line", opts.onConsoleLine);
  if (opts.restore?.console)
    consoleLog.replay(opts.restore.console, `[vmrig: restored ${opts.restore.origin}; the console of the saved boot:]`);
  let stderr = "";
  const started = Date.now();
  const child = spawnOwned("qemu-system-x86_64", qemuArgs(spec, layout, info.machineType), {
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
    consoleLog.write(Buffer.from(`[qemu] ${d.toString()}`));
  });
  const died = new Promise<never>((_, reject) => {
    child.once("exit", (code, sig) => {
      // vmrig kills its QEMU here only when aborted, and then `aborted` has rejected first
      const hint = sig
        ? `QEMU was killed by ${sig}, and not by vmrig: the kernel's OOM killer (\`dmesg | grep -i oom\`) or another process`
        : opts.restore
          ? "the saved state did not load; `--no-snapshots` boots instead, and `vmrig gc` drops stale snapshots"
          : "the console log in the result folder shows how far the boot got";
      reject(
        new VmrigError(
          `QEMU exited during ${opts.restore ? "the restore" : "boot"} (${sig ? `killed by ${sig}` : `exit status ${code}`})`,
          { machine: spec.name, call: opts.call ?? "start()", output: tail(stderr || consoleLog.all || "", 30), hint },
        ),
      );
    });
  });
  died.catch(() => undefined);
  const aborted = rejectOnAbort(opts.signal);
  const race = <T>(p: Promise<T>) => Promise.race([p, died, aborted]);

  try {
    // QEMU connects its sockets and greets on QMP before it runs a single guest instruction:
    // one that has not within a minute is stuck (a full disk under its state dir, a lock).
    const connected = async () => {
      const c = await Promise.all(SOCKET_NAMES.map((k) => accepts[k].connection));
      const sock = Object.fromEntries(SOCKET_NAMES.map((k, i) => [k, c[i]!])) as Record<SocketName, net.Socket>;
      const vm = new QemuVm(spec, layout, child, sock, consoleLog, started, opts.restore?.origin ?? "booted");
      await vm.qmp.handshake();
      return vm;
    };
    // (the deadline around the race, not inside it: a launch stopped by `aborted` or `died`
    // must clear its timer, or the process lingers until it fires)
    const vm = await within(race(connected()), CONNECT_S * 1000);
    if (!vm)
      throw new VmrigError(`QEMU did not connect to vmrig within ${CONNECT_S} s of starting`, {
        machine: spec.name,
        call: opts.call ?? "start()",
        output: tail(stderr || "(QEMU printed nothing)", 30),
        hint: "QEMU started but never reached its monitor: check the host's load and free space under the run's state directory",
      });
    // bounded: raced with `died` and the caller's signal (coldBoot's BOOT_DEADLINE_S)
    const ready = new Promise<void>((resolve) => vm.backdoor.once("ready", () => resolve()));
    if (opts.restore) {
      await race(vm.loadState(opts.restore.state));
      vm.backdoor.bootId = opts.restore.bootId;
      if (opts.restore.linksUp) await race(vm.setLinks(true));
      if (!opts.restore.paused) await race(resumeRestored(vm));
      return vm;
    }
    if (opts.linksDown) await race(vm.setLinks(false));
    await race(vm.qmp.execute("cont"));
    await race(ready);
    vm.bootMs = Date.now() - started;
    return vm;
  } catch (e) {
    closeServers();
    await terminate(child, 1000);
    void consoleLog.close();
    throw e;
  }
}

/**
 * Let a restored machine run and resynchronise with its shell: after a restore no banner
 * comes (the guest's shell was waiting for a command when it was saved), so a ping with a
 * nonce tells when it answers. The ping also sets the guest's clock to the host's.
 */
export async function resumeRestored(vm: QemuVm): Promise<void> {
  await vm.resume();
  await vm.backdoor.ping(10_000, true);
  vm.bootMs = Date.now() - vm.startedAt;
}

/** One running QEMU process with all its channels connected. */
export class QemuVm extends EventEmitter implements Guest {
  readonly kind = "qemu";
  readonly qmp: Qmp;
  readonly backdoor: Backdoor;
  /** the serial console, for input (sendConsole) */
  readonly consoleSocket: net.Socket;
  readonly xfer: net.Socket;
  readonly shell: net.Socket;
  bootMs = 0;
  readonly name: string;

  constructor(
    readonly spec: VmSpec,
    /** the files this process uses; a checkpoint restore starts the same layout again */
    readonly layout: Layout,
    private readonly child: ChildProcess,
    sock: Record<SocketName, net.Socket>,
    readonly console: ConsoleLog,
    readonly startedAt: number,
    readonly origin: string,
  ) {
    super();
    this.name = spec.name;
    this.qmp = new Qmp(sock.qmp);
    this.backdoor = new Backdoor({ requests: sock.cmd, replies: sock.cmd, stderr: sock.err, control: sock.ctl });
    this.consoleSocket = sock.con;
    this.xfer = sock.xfer;
    this.shell = sock.shell;
    sock.con.on("data", (d: Buffer) => this.console.write(d));
    for (const s of [sock.con, sock.xfer, sock.shell]) s.on("error", () => undefined);
    this.shell.resume(); // output with no shell() attached is dropped, never blocks the guest
    this.console.on("line", (line: string) => this.emit("console", line));
    child.once("exit", () => {
      this.backdoor.close("QEMU exited");
      this.qmp.close();
      void this.console.close();
      this.emit("exit");
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async setLinks(up: boolean): Promise<void> {
    for (const nic of this.spec.nics) await this.qmp.execute("set_link", { name: `vlan${nic.slot}`, up });
  }

  /** Pause the guest's CPUs (QMP stop). */
  async pause(): Promise<void> {
    await this.qmp.execute("stop");
  }

  async resume(): Promise<void> {
    await this.qmp.execute("cont");
  }

  /**
   * Write the paused machine's device state and RAM to `file`. RAM in a shared file
   * (a boot snapshot's template) is left out: it stays in that file (`x-ignore-shared`).
   */
  async saveState(file: string): Promise<void> {
    await this.qmp.execute("migrate-set-capabilities", {
      capabilities: [{ capability: "x-ignore-shared", state: true }],
    });
    await this.qmp.execute("migrate-set-parameters", { "max-bandwidth": 64 * 1024 * 1024 * 1024 });
    await this.qmp.execute("migrate", { uri: `exec:cat > ${shellQuote(file)}` });
    await this.waitForMigration("saving", file);
  }

  /** Load a state written by saveState (the process was started with `-incoming defer`). */
  async loadState(file: string): Promise<void> {
    await this.qmp.execute("migrate-set-capabilities", {
      capabilities: [{ capability: "x-ignore-shared", state: true }],
    });
    await this.qmp.execute("migrate-incoming", { uri: `exec:cat ${shellQuote(file)}` });
    await poll(
      MIGRATION_TIMEOUT_S,
      async () => {
        const s = await this.qmp.execute<{ status: string }>("query-status");
        return { done: s.status !== "inmigrate", last: `QEMU's status is still ${s.status}` };
      },
      (last) => this.migrationTimeout("loading", file, last),
      5,
    );
  }

  private migrationTimeout(what: string, file: string, last: string): VmrigError {
    return new VmrigError(`QEMU did not finish ${what} the machine's state within ${MIGRATION_TIMEOUT_S} s`, {
      machine: this.name,
      output: `${last}\nstate file: ${file}`,
      hint: "QEMU stopped making progress (a host under heavy load, or a full disk); the run's machines were stopped",
    });
  }

  private async waitForMigration(what: string, file: string): Promise<void> {
    await poll(
      MIGRATION_TIMEOUT_S,
      async () => {
        const m = await this.qmp.execute<{ status?: string; "error-desc"?: string }>("query-migrate");
        if (m.status === "failed" || m.status === "cancelled") {
          const fatal = new VmrigError(`QEMU failed ${what} the machine's state: ${m["error-desc"] ?? m.status}`, {
            machine: this.name,
          });
          return { done: false, fatal };
        }
        return { done: m.status === "completed", last: `migration status: ${m.status ?? "none"}` };
      },
      (last) => this.migrationTimeout(what, file, last),
      5,
    );
  }

  /**
   * Freeze the current disk overlays and continue on new ones on top of them: the frozen
   * files are what the disks held at this instant (the machine must be paused).
   */
  async freezeDisks(next: Record<string, string>): Promise<Record<string, string>> {
    const frozen = { ...this.layout.drives };
    for (const [id, file] of Object.entries(next)) {
      await this.qmp.execute("blockdev-snapshot-sync", { device: id, "snapshot-file": file, format: "qcow2" });
      this.layout.drives[id] = file;
    }
    return frozen;
  }

  async waitForExit(): Promise<void> {
    await exited(this.child);
  }

  /** Stop QEMU now (QMP quit, then signals); the overlays stay for the caller. */
  async kill(): Promise<void> {
    if (this.running) {
      await within(
        this.qmp.execute("quit").catch(() => undefined),
        1000,
      );
      await within(exited(this.child), 2000);
      await terminate(this.child, 2000);
    }
    await exited(this.child);
  }
}
