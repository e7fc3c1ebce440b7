import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { keyFor } from "./keys.js";
import { readScreen } from "./ocr.js";
import { HOST_NIC, Vm, type VmSpec } from "../vm/qemu.js";
import { BackdoorClosed, CommandTimeout } from "../vm/backdoor.js";
import type { QmpEvent } from "../vm/qmp.js";
import { VmrigError, callerLocation, errorMessage, tail } from "../util/errors.js";
import { shellQuote, sleep, within } from "../util/proc.js";
import type { Logger } from "../driver/logger.js";

/** What a kernel prints when it crashes (an Oops may leave the boot hanging rather than stopped). */
const KERNEL_CRASH = /\b(Oops: |Kernel panic - not syncing|BUG: unable to handle|general protection fault|double fault: |invalid opcode: )/;

/** A boot that ended in a kernel crash: start() may try once more. */
class KernelCrash extends Error {
  constructor(
    readonly line: string,
    /** the console's last lines */
    readonly console: string,
  ) {
    super(`the guest kernel crashed: ${line}`);
  }
}

/** A regex argument: a string is a regular expression, as in NixOS. */
export type Pattern = string | RegExp;

export interface ExecuteOptions {
  /** seconds; default 900 */
  timeout?: number;
  /** false: do not collect stdout (NixOS `check_output`) */
  checkOutput?: boolean;
}

export interface ExecuteResult {
  status: number;
  stdout: string;
}

interface CommandOutput extends ExecuteResult {
  stderr: string;
}

/** What a failed command printed, for the error report: stdout, then stderr. */
function shown(r: CommandOutput): string {
  if (!r.stderr.trim()) return r.stdout;
  return `${r.stdout}${r.stdout && !r.stdout.endsWith("\n") ? "\n" : ""}--- stderr ---\n${r.stderr}`;
}

export interface MachineContext {
  logger: Logger;
  resultDir: string;
  /** the VM spec, made lazily: the image is built before the first start */
  spec: () => VmSpec;
  /** run before every command (the script's active polling conditions) */
  beforeCommand?: () => Promise<void>;
  /** the terminal shell() talks to (default: this process's stdin and stdout) */
  terminal?: () => Terminal;
  /** the test's enableOCR: getScreenText and waitForText refuse without it */
  ocr?: boolean;
}

/** A terminal lent to `shell()`: raw keystrokes in, the guest's screen out. */
export interface Terminal {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  columns?: number;
  rows?: number;
  /** give the terminal back (e.g. to the REPL) */
  release?: () => void;
}

/** Ctrl-]: leaves shell() without ending the guest's shell by hand (telnet's escape). */
const DETACH = 0x1d;

function processTerminal(): Terminal {
  const stdin = process.stdin;
  const wasRaw = stdin.isTTY ? stdin.isRaw : false;
  if (stdin.isTTY) stdin.setRawMode(true);
  stdin.resume();
  return {
    input: stdin,
    output: process.stdout,
    ...(process.stdout.columns ? { columns: process.stdout.columns, rows: process.stdout.rows } : {}),
    release: () => {
      if (stdin.isTTY) stdin.setRawMode(wasRaw);
      stdin.pause();
    },
  };
}

const DEFAULT_TIMEOUT = 900;

/**
 * Loops in the guest (no host round trips) until systemd answers and has queued
 * its boot transaction (or finished booting): systemd opens its socket before it
 * queues the default target, and in that window every unit looks idle.
 */
const SYSTEMD_READY =
  "until s=$(systemctl show -p NJobs -p SystemState 2>/dev/null) && " +
  "! { printf '%s\\n' \"$s\" | grep -qx SystemState=initializing && printf '%s\\n' \"$s\" | grep -qx NJobs=0; }; do sleep 0.05; done";

function toRegExp(p: Pattern): RegExp {
  return typeof p === "string" ? new RegExp(p, "m") : p;
}

function quote(s: string): string {
  return JSON.stringify(s);
}

/**
 * One test machine. Methods are arrow-function properties, so destructuring
 * them (`const { succeed } = server`) keeps them bound.
 */
export class Machine {
  private vm: Vm | undefined;
  private starting: Promise<void> | undefined;

  constructor(
    readonly name: string,
    private readonly ctx: MachineContext,
  ) {}

  /** The QEMU process's PID while it runs, for the driver's leak checks. */
  get pid(): number | undefined {
    return this.vm?.pid;
  }

  /** QEMU start → backdoor answering of the last boot, in ms. */
  get bootMs(): number | undefined {
    return this.vm?.bootMs;
  }

  /** QEMU start → backdoor and systemd both answering (what start() waits for), in ms. */
  systemdReadyMs: number | undefined;

  private fail_(summary: string, call: string, extra: Partial<ConstructorParameters<typeof VmrigError>[1]> & { location?: string | undefined } = {}): VmrigError {
    return new VmrigError(summary, { machine: this.name, call, ...extra });
  }

  // ---- power -----------------------------------------------------------------

  /** Boot the machine; resolves when its backdoor answers. Machines also boot on first use. */
  start = async (): Promise<void> => {
    const location = callerLocation();
    if (this.vm?.running) return;
    if (!this.starting) {
      this.starting = this.ctx.logger
        .nested(
          "starting vm",
          async () => {
            const crashError = (c: KernelCrash, hint: string) =>
              this.fail_(`the guest kernel crashed while booting: ${c.line.trim()}`, "start()", { location, output: c.console, hint });
            try {
              await this.boot(location);
            } catch (e) {
              if (!(e instanceof KernelCrash)) throw e;
              if (this.vm?.spec.accel !== "tcg") throw crashError(e, "the console log in the result folder has the whole trace");
              // Under TCG a kernel that crashes while booting is most often QEMU's fault, not the
              // test's (its multi-threaded CPU emulation races the kernel's live code patching,
              // rarely): boot once more, and say so in the log.
              this.ctx.logger.log(`the guest kernel crashed while booting (${e.line.trim()}); booting again`, this.name);
              try {
                await this.boot(location);
              } catch (again) {
                if (!(again instanceof KernelCrash)) throw again;
                throw crashError(
                  again,
                  "it crashed on both boots, so it is not one of TCG's rare races: read the trace (the console log in the result folder) and check boot.kernelParams",
                );
              }
            }
          },
          this.name,
        )
        .finally(() => (this.starting = undefined));
    }
    await this.starting;
  };

  /** One boot: QEMU up, backdoor answering, systemd taking requests; a kernel crash on the console ends it at once. */
  private async boot(location: string | undefined): Promise<void> {
    const startedAt = Date.now();
    const vm = new Vm(this.ctx.spec());
    this.vm = vm;
    this.hostNic = (vm.spec.forwardPorts?.length ?? 0) > 0;
    vm.on("exit", () => this.ctx.logger.detail("QEMU exited", this.name));
    vm.on("console", (line: string) => this.ctx.logger.consoleLine(this.name, line));
    let onLine: (line: string) => void = () => undefined;
    let crashSeen = false;
    const crashed = new Promise<never>((_, reject) => {
      onLine = (line: string) => {
        if (!KERNEL_CRASH.test(line)) return;
        crashSeen = true;
        vm.off("console", onLine);
        // a moment more, so that the report and the console log hold the trace that follows
        setTimeout(() => reject(new KernelCrash(line, tail(vm.console?.all ?? "", 40))), 1500);
      };
      vm.on("console", onLine);
    });
    crashed.catch(() => undefined);
    try {
      try {
        await Promise.race([vm.start(), crashed]);
      } catch (e) {
        throw e instanceof VmrigError || e instanceof KernelCrash ? e : this.fail_(`could not boot: ${errorMessage(e)}`, "start()", { location, cause: e });
      }
      vm.backdoor!.on("stray", (b: Buffer) => this.ctx.logger.detail(`(output outside any command) ${b.toString()}`, this.name));
      // The backdoor starts before systemd (guest/init); as in NixOS, where it is a
      // unit, a started machine must also take `systemctl` requests.
      const ready = await Promise.race([
        vm.backdoor!.run(SYSTEMD_READY, 300).catch((e: unknown) => ({ status: -1, stdout: Buffer.from(errorMessage(e)) })),
        crashed,
      ]);
      if (ready.status !== 0) {
        throw this.fail_("systemd did not start taking requests within 300 s", "start()", { location, output: tail(vm.console?.all ?? "", 30) });
      }
      if (crashSeen) await crashed; // an Oops that did not stop the boot still leaves a kernel not to trust
    } catch (e) {
      await vm.kill();
      throw e;
    } finally {
      vm.off("console", onLine);
    }
    this.systemdReadyMs = Date.now() - startedAt;
    this.ctx.logger.log(`booted in ${(this.systemdReadyMs / 1000).toFixed(1)} s (shell after ${((vm.bootMs ?? 0) / 1000).toFixed(1)} s)`, this.name);
    if (vm.spec.vncSocket) this.ctx.logger.log(`display: VNC on unix socket ${vm.spec.vncSocket}`, this.name);
  }

  /** Is the VM process running and its shell answering? */
  isUp = async (): Promise<boolean> => {
    if (!this.vm?.running || !this.vm.backdoor) return false;
    try {
      await this.vm.backdoor.ping(2000);
      return true;
    } catch {
      return false;
    }
  };

  /** Power the machine off cleanly and wait until QEMU has exited. */
  shutdown = async (): Promise<void> => {
    if (!this.vm?.running) return;
    await this.ctx.logger.nested(
      "shutting down",
      async () => {
        this.vm!.backdoor!.run("systemctl poweroff --no-block").catch(() => undefined);
        await within(this.vm!.waitForExit(), 120_000);
        if (this.vm!.running) await this.vm!.kill();
      },
      this.name,
    );
  };

  /** Kill the VM at once, like pulling the plug. */
  crash = async (): Promise<void> => {
    if (!this.vm?.running) return;
    this.ctx.logger.log("crashing (QEMU killed)", this.name);
    await this.vm.kill();
  };

  /** Wait until the machine has powered off by itself. */
  waitForShutdown = async (timeout = DEFAULT_TIMEOUT): Promise<void> => {
    const location = callerLocation();
    if (!this.vm?.running) return;
    const done = await within(this.vm.waitForExit().then(() => true), timeout * 1000);
    if (!done) throw this.fail_(`still running after ${timeout} s`, "waitForShutdown()", { location });
  };

  /** Stop QEMU (used by the driver at the end of a run). */
  async kill(): Promise<void> {
    await this.vm?.kill();
  }

  // ---- commands --------------------------------------------------------------

  private async ensureUp(): Promise<Vm> {
    if (!this.vm?.running) await this.start();
    return this.vm!;
  }

  private async runCommand(cmd: string, call: string, location: string | undefined, timeout: number): Promise<CommandOutput> {
    const vm = await this.ensureUp();
    await this.ctx.beforeCommand?.();
    try {
      const r = await vm.backdoor!.run(cmd, timeout);
      const stderr = r.stderr.toString();
      if (stderr) this.ctx.logger.detail(stderr.trimEnd(), this.name);
      return { status: r.status, stdout: r.stdout.toString(), stderr };
    } catch (e) {
      if (e instanceof CommandTimeout) {
        const out = e.partial.stdout.toString() + e.partial.stderr.toString();
        throw this.fail_(`timed out after ${timeout} s`, call, {
          command: cmd,
          status: null,
          output: out,
          location,
          hint: "the command was killed in the guest; raise `timeout` if it is just slow",
        });
      }
      if (e instanceof BackdoorClosed) {
        throw this.fail_(e.message, call, {
          command: cmd,
          location,
          output: tail(vm.console?.all ?? "", 15),
          hint: "the machine's console log in the result folder shows what happened",
        });
      }
      throw e;
    }
  }

  /** Run `cmd` in bash as root (`set -euo pipefail`, cwd /root). Never throws on a non-zero status. */
  execute = async (cmd: string, opts: ExecuteOptions = {}): Promise<ExecuteResult> => {
    const location = callerLocation();
    const timeout = opts.timeout ?? DEFAULT_TIMEOUT;
    return this.ctx.logger.nested(
      `executing: ${cmd}`,
      async () => {
        const r = await this.runCommand(cmd, `execute(${quote(cmd)})`, location, timeout);
        return { status: r.status, stdout: opts.checkOutput === false ? "" : r.stdout };
      },
      this.name,
    );
  };

  private async expectStatus(cmds: (string | ExecuteOptions)[], want: "zero" | "nonzero"): Promise<string> {
    const location = callerLocation();
    const last = cmds[cmds.length - 1];
    const opts: ExecuteOptions = typeof last === "object" ? last : {};
    const commands = cmds.filter((c): c is string => typeof c === "string");
    const method = want === "zero" ? "succeed" : "fail";
    let output = "";
    for (const cmd of commands) {
      const call = `${method}(${quote(cmd)})`;
      await this.ctx.logger.nested(
        `${want === "zero" ? "must succeed" : "must fail"}: ${cmd}`,
        async () => {
          const r = await this.runCommand(cmd, call, location, opts.timeout ?? DEFAULT_TIMEOUT);
          const ok = want === "zero" ? r.status === 0 : r.status !== 0;
          if (!ok) {
            throw this.fail_(
              want === "zero" ? `command failed with exit status ${r.status}` : "command succeeded but was expected to fail",
              call,
              {
                command: cmd,
                status: r.status,
                output: shown(r),
                location,
              },
            );
          }
          output += r.stdout;
        },
        this.name,
      );
    }
    return output;
  }

  /** Run each command; throw if one exits non-zero. Returns their stdout. */
  succeed = (...cmds: [string, ...(string | ExecuteOptions)[]]): Promise<string> => this.expectStatus(cmds, "zero");

  /** Run each command; throw if one exits zero. Returns their stdout. */
  fail = (...cmds: [string, ...(string | ExecuteOptions)[]]): Promise<string> => this.expectStatus(cmds, "nonzero");

  private async poll(
    call: string,
    timeout: number,
    location: string | undefined,
    attempt: () => Promise<{ done: boolean; last: string; fatal?: VmrigError }>,
    describe: string,
  ): Promise<void> {
    const deadline = Date.now() + timeout * 1000;
    let last = "";
    for (;;) {
      const r = await attempt();
      if (r.fatal) throw r.fatal;
      if (r.done) return;
      last = r.last;
      if (Date.now() >= deadline) {
        throw this.fail_(`timed out after ${timeout} s waiting for ${describe}`, call, { output: last, location, status: undefined });
      }
      await sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
    }
  }

  /** Retry `cmd` every second until its exit status is what `want` asks for. */
  private async retryCommand(cmd: string, want: "zero" | "nonzero", timeout: number, location: string | undefined): Promise<string> {
    const method = want === "zero" ? "waitUntilSucceeds" : "waitUntilFails";
    const call = `${method}(${quote(cmd)})`;
    let stdout = "";
    await this.ctx.logger.nested(
      `waiting for ${want === "zero" ? "success" : "failure"}: ${cmd}`,
      () =>
        this.poll(call, timeout, location, async () => {
          const r = await this.runCommand(cmd, call, location, timeout);
          stdout = r.stdout;
          return { done: (r.status === 0) === (want === "zero"), last: `last attempt: exit status ${r.status}\n${shown(r)}` };
        }, `\`${cmd}\` to ${want === "zero" ? "succeed" : "fail"}`),
      this.name,
    );
    return stdout;
  }

  /** Retry `cmd` every second until it exits 0. Returns its stdout. */
  waitUntilSucceeds = (cmd: string, timeout = DEFAULT_TIMEOUT): Promise<string> => this.retryCommand(cmd, "zero", timeout, callerLocation());

  /** Retry `cmd` every second until it exits non-zero. Returns its stdout. */
  waitUntilFails = (cmd: string, timeout = DEFAULT_TIMEOUT): Promise<string> => this.retryCommand(cmd, "nonzero", timeout, callerLocation());

  // ---- systemd ---------------------------------------------------------------

  /** `systemctl ARGS` (for `user`: in that user's session manager). */
  systemctl = async (args: string, user?: string): Promise<ExecuteResult> => {
    const cmd = user
      ? `su -l ${user} --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user ${args.replace(/'/g, `'\\''`)}'`
      : `systemctl ${args}`;
    return this.execute(cmd);
  };

  /** Properties of a unit, as `systemctl show` prints them. */
  getUnitInfo = async (unit: string, user?: string): Promise<Record<string, string>> => {
    const r = await this.runCommand(
      user ? `su -l ${user} -s /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user show ${unit}'` : `systemctl show ${quote(unit)}`,
      `getUnitInfo(${quote(unit)})`,
      callerLocation(),
      60,
    );
    const info: Record<string, string> = {};
    for (const line of r.stdout.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) info[line.slice(0, i)] = line.slice(i + 1);
    }
    return info;
  };

  /** Wait until `unit` is active; throw at once if it fails or cannot exist. */
  waitForUnit = async (unit: string, opts: { user?: string; timeout?: number } = {}): Promise<void> => {
    const location = callerLocation();
    const timeout = opts.timeout ?? DEFAULT_TIMEOUT;
    const call = `waitForUnit(${quote(unit)})`;
    const userArg = opts.user ? ` --user -M ${opts.user}@` : "";
    await this.ctx.logger.nested(
      `waiting for unit ${unit}${opts.user ? ` of ${opts.user}` : ""}`,
      () =>
        this.poll(call, timeout, location, async () => {
          const r = await this.runCommand(
            // The job count first: read after the unit, the unit could finish its job in
            // between and look "inactive with nothing pending" on its way to active.
            `systemctl${userArg} show -p NJobs -p SystemState 2>&1; systemctl${userArg} show --property=ActiveState,SubState,LoadState,Result ${quote(unit)} 2>&1`,
            call,
            location,
            60,
          );
          const props = Object.fromEntries(
            r.stdout
              .split("\n")
              .filter((l) => l.includes("="))
              .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
          );
          // Before the boot transaction is queued every unit looks idle: not a verdict yet.
          const jobs = props.SystemState === "initializing" && props.NJobs === "0" ? 1 : Number(props.NJobs ?? "1");
          if (props.ActiveState === "active") return { done: true, last: "" };
          if (props.ActiveState === "failed") {
            const why = await this.runCommand(`systemctl status --no-pager --lines=20 ${quote(unit)} 2>&1 || true`, call, location, 60);
            return {
              done: false,
              last: "",
              fatal: this.fail_(`unit ${unit} failed`, call, {
                output: why.stdout,
                location,
                hint: `\`journalctl -u ${unit}\` on the machine has the whole story`,
              }),
            };
          }
          if (props.ActiveState === "inactive" && jobs === 0) {
            // As in NixOS: nothing will ever start it, so waiting longer cannot help.
            const missing = props.LoadState === "not-found";
            return {
              done: false,
              last: "",
              fatal: this.fail_(
                missing ? `unit ${unit} does not exist and nothing is starting it` : `unit ${unit} is inactive and there are no pending jobs`,
                call,
                {
                  location,
                  output: r.stdout,
                  hint: missing
                    ? "check the unit name (`systemctl list-units` on the machine) and that its package is installed"
                    : `nothing pulls ${unit} in: enable it (e.g. systemd.services.<name>.wantedBy) or start it with startJob()`,
                },
              ),
            };
          }
          return { done: false, last: `unit ${unit}: ${props.ActiveState ?? "(systemd not answering yet)"}/${props.SubState ?? ""}` };
        }, `unit ${unit} to become active`),
      this.name,
    );
  };

  // ---- files and ports -------------------------------------------------------

  waitForFile = async (file: string, timeout = DEFAULT_TIMEOUT): Promise<void> => {
    const location = callerLocation();
    await this.ctx.logger.nested(
      `waiting for file ${file}`,
      () =>
        this.poll(`waitForFile(${quote(file)})`, timeout, location, async () => {
          const r = await this.runCommand(`test -e ${shellQuote(file)}`, `waitForFile(${quote(file)})`, location, 60);
          return { done: r.status === 0, last: `${file} does not exist` };
        }, `${file} to exist`),
      this.name,
    );
  };

  private waitPort = async (port: number, addr: string, open: boolean, timeout: number, location: string | undefined): Promise<void> => {
    const method = open ? "waitForOpenPort" : "waitForClosedPort";
    const call = `${method}(${port}${addr !== "localhost" ? `, ${quote(addr)}` : ""})`;
    await this.ctx.logger.nested(
      `waiting for TCP port ${port} on ${addr} to ${open ? "open" : "close"}`,
      () =>
        this.poll(call, timeout, location, async () => {
          const r = await this.runCommand(`nc -z -w 2 ${shellQuote(addr)} ${port}`, call, location, 60);
          return { done: (r.status === 0) === open, last: `port ${port} on ${addr} is ${r.status === 0 ? "open" : "closed"}` };
        }, `port ${port} to ${open ? "open" : "close"}`),
      this.name,
    );
  };

  waitForOpenPort = (port: number, addr = "localhost", timeout = DEFAULT_TIMEOUT): Promise<void> =>
    this.waitPort(port, addr, true, timeout, callerLocation());

  waitForClosedPort = (port: number, addr = "localhost", timeout = DEFAULT_TIMEOUT): Promise<void> =>
    this.waitPort(port, addr, false, timeout, callerLocation());

  /** Sleep `secs` seconds of guest time. */
  sleep = async (secs: number): Promise<void> => {
    await this.runCommand(`sleep ${secs}`, `sleep(${secs})`, callerLocation(), secs + 60);
  };

  // ---- console, QEMU ---------------------------------------------------------

  /** Everything the serial console printed since the VM started. */
  getConsoleLog = (): string => this.vm?.console?.all ?? "";

  waitForConsoleText = async (pattern: Pattern, timeout = DEFAULT_TIMEOUT): Promise<string> => {
    const location = callerLocation();
    const re = toRegExp(pattern);
    const vm = await this.ensureUp();
    const found = (): string | undefined => re.exec(vm.console?.all ?? "")?.[0];
    const hit = found();
    if (hit !== undefined) return hit;
    return new Promise((resolve, reject) => {
      const onData = () => {
        const m = found();
        if (m === undefined) return;
        cleanup();
        resolve(m);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(this.fail_(`timed out after ${timeout} s waiting for console text ${re}`, `waitForConsoleText(${re})`, { output: tail(vm.console?.all ?? ""), location }));
      }, timeout * 1000);
      const cleanup = () => {
        clearTimeout(timer);
        vm.console?.off("data", onData);
      };
      vm.console?.on("data", onData);
    });
  };

  /** A QMP command, e.g. `qmp("query-status")`. */
  qmp = async (command: string, args?: Record<string, unknown>): Promise<unknown> => {
    const vm = await this.ensureUp();
    return vm.qmp!.execute(command, args);
  };

  /** A QEMU human-monitor command, e.g. `sendMonitorCommand("info network")`. */
  sendMonitorCommand = async (command: string): Promise<string> => {
    const vm = await this.ensureUp();
    return vm.qmp!.hmp(command);
  };

  waitForQmpEvent = async (filter: (e: QmpEvent) => boolean, timeout = DEFAULT_TIMEOUT): Promise<QmpEvent> => {
    const location = callerLocation();
    const vm = await this.ensureUp();
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(this.fail_(`timed out after ${timeout} s waiting for a QMP event`, "waitForQmpEvent()", { location })), timeout * 1000);
    try {
      return await vm.qmp!.waitForEvent(filter, 0, ac.signal);
    } finally {
      clearTimeout(timer);
    }
  };

  /** Save a PNG of the screen in the result folder; returns its path. */
  screenshot = async (name: string): Promise<string> => {
    const vm = await this.ensureUp();
    const file = path.resolve(this.ctx.resultDir, name.endsWith(".png") ? name : `${name}.png`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await vm.qmp!.execute("screendump", { filename: file, format: "png" });
    this.ctx.logger.log(`screenshot ${path.relative(process.cwd(), file)}`, this.name);
    return file;
  };

  /** Take the machine's vlan links down (it drops off every network). */
  block = async (): Promise<void> => this.setLinks(false);

  /** Bring the machine's vlan links back up. */
  unblock = async (): Promise<void> => this.setLinks(true);

  private async setLinks(up: boolean): Promise<void> {
    const vm = await this.ensureUp();
    for (const nic of vm.spec.nics) await vm.qmp!.execute("set_link", { name: `vlan${nic.slot}`, up });
    this.ctx.logger.log(up ? "unblocked (links up)" : "blocked (links down)", this.name);
  }

  // ---- more power ------------------------------------------------------------

  /** Reboot (always allowed) and resolve when the machine's shell answers again. */
  reboot = async (timeout = DEFAULT_TIMEOUT): Promise<void> => {
    const location = callerLocation();
    const vm = await this.ensureUp();
    await this.ctx.logger.nested(
      "rebooting",
      async () => {
        const before = vm.backdoor!.bootId;
        const rebooted = new Promise<void>((resolve) => {
          const onReady = (id: string) => {
            if (id === before) return;
            vm.backdoor!.off("ready", onReady);
            resolve();
          };
          vm.backdoor!.on("ready", onReady);
        });
        vm.backdoor!.run("systemctl reboot --no-block").catch(() => undefined);
        const ok = await within(rebooted.then(() => true), timeout * 1000);
        if (!ok) throw this.fail_(`did not come back within ${timeout} s of rebooting`, "reboot()", { location, output: tail(vm.console?.all ?? "") });
      },
      this.name,
    );
  };

  // ---- files -----------------------------------------------------------------

  /** Copy a host file or directory to `target` in the guest (binary-safe, any size). */
  copyFromHost = async (source: string, target: string): Promise<void> => {
    const location = callerLocation();
    const call = `copyFromHost(${quote(source)}, ${quote(target)})`;
    const src = path.resolve(source);
    if (!fs.existsSync(src)) throw this.fail_(`host path ${src} does not exist`, call, { location });
    const vm = await this.ensureUp();
    await this.ctx.logger.nested(
      `copying ${source} to ${target}`,
      async () => {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-xfer-"));
        try {
          const tar = path.join(tmp, "x.tar");
          await promisify(execFile)("tar", ["-cf", tar, "-C", path.dirname(src), path.basename(src)]);
          const size = fs.statSync(tar).size;
          // The guest reads exactly `size` bytes from the transfer port while we stream the archive into it.
          const dst = shellQuote(target);
          const cmd = [
            // find_port: the backdoor's own lookup of a virtio port by name (guest/backdoor)
            "port=$(find_port vmrig.xfer)",
            `mkdir -p "$(dirname ${dst})"`,
            `t=$(mktemp -d -p "$(dirname ${dst})" .vmrig-xfer-XXXXXX)`,
            `head -c ${size} "$port" | tar -x -C "$t"`,
            `rm -rf ${dst}`,
            `mv "$t"/${shellQuote(path.basename(src))} ${dst}`,
            `rmdir "$t"`,
          ].join("; ");
          const running = this.runCommand(cmd, call, location, Math.max(120, size / 1e6));
          await new Promise<void>((resolve, reject) => {
            const rs = fs.createReadStream(tar);
            rs.on("error", reject);
            rs.on("end", () => resolve());
            rs.pipe(vm.xfer!, { end: false });
          });
          const r = await running;
          if (r.status !== 0) throw this.fail_(`copy failed with exit status ${r.status}`, call, { command: cmd, status: r.status, output: shown(r), location });
        } finally {
          fs.rmSync(tmp, { recursive: true, force: true });
        }
      },
      this.name,
    );
  };

  /** Copy a guest file or directory to the host (default: the test's result folder); returns the host path. */
  copyFromMachine = async (source: string, targetDir?: string): Promise<string> => {
    const location = callerLocation();
    const call = `copyFromMachine(${quote(source)})`;
    const dir = path.resolve(targetDir ?? this.ctx.resultDir);
    fs.mkdirSync(dir, { recursive: true });
    return this.ctx.logger.nested(
      `copying ${source} from the machine to ${path.relative(process.cwd(), dir) || "."}`,
      async () => {
        const vm = await this.ensureUp();
        const cmd = `tar -c -C "$(dirname ${shellQuote(source)})" "$(basename ${shellQuote(source)})"`;
        const r = await vm.backdoor!.run(cmd, 3600).catch((e: unknown) => {
          throw this.fail_(`copy failed: ${errorMessage(e)}`, call, { command: cmd, location });
        });
        if (r.status !== 0) {
          throw this.fail_(`copy failed with exit status ${r.status}`, call, { command: cmd, status: r.status, output: r.stderr.toString(), location });
        }
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-xfer-"));
        try {
          fs.writeFileSync(path.join(tmp, "x.tar"), r.stdout);
          await promisify(execFile)("tar", ["-xf", path.join(tmp, "x.tar"), "-C", dir]);
        } finally {
          fs.rmSync(tmp, { recursive: true, force: true });
        }
        return path.join(dir, path.basename(source));
      },
      this.name,
    );
  };

  /** Wait until a unix socket accepts connections. */
  waitForOpenUnixSocket = async (socketPath: string, timeout = DEFAULT_TIMEOUT): Promise<void> => {
    const location = callerLocation();
    const call = `waitForOpenUnixSocket(${quote(socketPath)})`;
    await this.ctx.logger.nested(
      `waiting for unix socket ${socketPath}`,
      () =>
        this.poll(call, timeout, location, async () => {
          const r = await this.runCommand(`nc -U -z ${shellQuote(socketPath)}`, call, location, 60);
          return { done: r.status === 0, last: `${socketPath} does not accept connections` };
        }, `${socketPath} to accept connections`),
      this.name,
    );
  };

  // ---- more systemd ----------------------------------------------------------

  startJob = (unit: string, user?: string): Promise<ExecuteResult> => this.systemctl(`start ${unit}`, user);

  stopJob = (unit: string, user?: string): Promise<ExecuteResult> => this.systemctl(`stop ${unit}`, user);

  getUnitProperty = async (unit: string, property: string, user?: string): Promise<string> => {
    const info = await this.getUnitInfo(unit, user);
    if (!(property in info)) {
      throw this.fail_(`unit ${unit} has no property ${property}`, `getUnitProperty(${quote(unit)}, ${quote(property)})`, {
        location: callerLocation(),
      });
    }
    return info[property]!;
  };

  /** Throw unless `unit` is in `state` (default "active") right now. */
  requireUnitState = async (unit: string, state = "active", user?: string): Promise<void> => {
    const location = callerLocation();
    const info = await this.getUnitInfo(unit, user);
    if (info.ActiveState !== state) {
      throw this.fail_(`unit ${unit} is ${info.ActiveState ?? "unknown"}, expected ${state}`, `requireUnitState(${quote(unit)}, ${quote(state)})`, {
        location,
      });
    }
  };

  // ---- input, terminals ------------------------------------------------------

  /** Press a key combination, QEMU `sendkey` syntax: "ctrl-alt-f1", "ret", "shift-a". */
  sendKey = async (key: string): Promise<void> => {
    const vm = await this.ensureUp();
    await vm.qmp!.hmp(`sendkey ${key}`);
  };

  /** Type `text` on the keyboard (US layout). */
  sendChars = async (text: string): Promise<void> => {
    const vm = await this.ensureUp();
    this.ctx.logger.log(`sending keys ${JSON.stringify(text)}`, this.name);
    for (const ch of text) await vm.qmp!.hmp(`sendkey ${keyFor(ch)}`);
  };

  /** Write `text` to the serial console, as if typed there. */
  sendConsole = async (text: string): Promise<void> => {
    const vm = await this.ensureUp();
    vm.consoleSocket!.write(text);
  };

  /** The text on virtual terminal `tty` (1-based), line-wrapped at its width. */
  getTtyText = async (tty: number): Promise<string> => {
    const r = await this.runCommand(
      `fold -w "$(stty -F /dev/tty${tty} size | cut -d' ' -f2)" /dev/vcs${tty}`,
      `getTtyText(${tty})`,
      callerLocation(),
      60,
    );
    return r.stdout;
  };

  waitUntilTtyMatches = async (tty: number, pattern: Pattern, timeout = DEFAULT_TIMEOUT): Promise<void> => {
    const location = callerLocation();
    const re = toRegExp(pattern);
    const call = `waitUntilTtyMatches(${tty}, ${re})`;
    await this.ctx.logger.nested(
      `waiting for ${re} on tty${tty}`,
      () =>
        this.poll(call, timeout, location, async () => {
          const text = await this.getTtyText(tty);
          return { done: re.test(text), last: `tty${tty} shows:\n${text.trimEnd()}` };
        }, `${re} on tty${tty}`),
      this.name,
    );
  };

  dumpTtyContents = async (tty: number): Promise<void> => {
    this.ctx.logger.log(`tty${tty}:\n${(await this.getTtyText(tty)).trimEnd()}`, this.name);
  };

  // ---- OCR ---------------------------------------------------------------------

  /** The text on the screen, read by OCR (needs `enableOCR: true`). */
  getScreenText = async (): Promise<string> => (await this.readScreenText("getScreenText()", callerLocation(), 1))[0]!;

  /** The screen read by OCR from three preparations of the image; a glyph one misreads another may get right. */
  getScreenTextVariants = async (): Promise<string[]> => this.readScreenText("getScreenTextVariants()", callerLocation(), 3);

  /** Until OCR finds `pattern` on the screen (in any of the variants), reading it about once a second. */
  waitForText = async (pattern: Pattern, timeout = DEFAULT_TIMEOUT): Promise<void> => {
    const location = callerLocation();
    const re = toRegExp(pattern);
    const call = `waitForText(${re})`;
    await this.ctx.logger.nested(
      `waiting for ${re} on the screen (OCR)`,
      () =>
        this.poll(call, timeout, location, async () => {
          const texts = await this.readScreenText(call, location, 3, (t) => re.test(t));
          return { done: texts.some((t) => re.test(t)), last: `OCR of the screen read:\n${texts[0]!.trimEnd()}` };
        }, `${re} on the screen`),
      this.name,
    );
  };

  private ocrDumps = 0;

  private async readScreenText(call: string, location: string | undefined, count: number, accept?: (t: string) => boolean): Promise<string[]> {
    if (!this.ctx.ocr) {
      throw this.fail_("OCR is off for this test", call, {
        location,
        hint: "set `enableOCR: true` in defineTest (NixOS: enableOCR = true); it needs tesseract on the host",
      });
    }
    const vm = await this.ensureUp();
    const dump = path.join(vm.spec.stateDir, `${vm.spec.name.slice(0, 20)}.ocr${this.ocrDumps++}.ppm`);
    try {
      await vm.qmp!.execute("screendump", { filename: dump });
      const texts = await readScreen(dump, accept, count);
      this.ctx.logger.detail(`OCR read ${texts[0]!.length} characters`, this.name);
      return texts;
    } catch (e) {
      if (e instanceof VmrigError && e.machine === undefined) {
        // tesseract failed on the host: keep its command, output and hint, say where
        throw this.fail_(`OCR failed: ${e.summary}`, call, { location, command: e.command, status: e.status, output: e.output, hint: e.hint, cause: e });
      }
      throw e instanceof VmrigError ? e : this.fail_(`could not read the screen: ${errorMessage(e)}`, call, { location, cause: e });
    } finally {
      fs.rmSync(dump, { force: true });
    }
  }

  // ---- host access -------------------------------------------------------------

  /**
   * Forward host TCP `hostPort` (on 127.0.0.1) to `guestPort`. The guest gets a
   * user-mode NIC (eth0) that can reach nothing but lets the host in; its
   * firewall trusts eth0. Guests have no such NIC unless a test asks.
   */
  forwardPort = async (hostPort: number, guestPort: number): Promise<void> => {
    const location = callerLocation();
    const vm = await this.ensureUp();
    await this.ctx.logger.nested(
      `forwarding host port ${hostPort} to guest port ${guestPort}`,
      async () => {
        if (!this.hostNic) {
          await vm.qmp!.execute("netdev_add", { type: "user", id: HOST_NIC.id, restrict: true, net: HOST_NIC.net });
          await vm.qmp!.execute("device_add", { driver: "virtio-net-pci", netdev: HOST_NIC.id, id: `${HOST_NIC.id}-nic`, mac: HOST_NIC.mac });
          const cmd =
            `n=; for i in $(seq 100); do n=$(grep -l ${HOST_NIC.mac} /sys/class/net/*/address | cut -d/ -f5 || true); [ -n "$n" ] && break; sleep 0.1; done; ` +
            '[ -n "$n" ] || { echo "the hot-plugged NIC did not appear" >&2; exit 1; }; ' +
            `[ "$n" = eth0 ] || ip link set "$n" name eth0; ip link set eth0 up; ip addr replace ${HOST_NIC.guestAddress}/24 dev eth0; ` +
            '(nft list table inet vmrig-firewall >/dev/null 2>&1 && nft insert rule inet vmrig-firewall input iifname eth0 accept) || true';
          const r = await this.runCommand(cmd, `forwardPort(${hostPort}, ${guestPort})`, location, 60);
          if (r.status !== 0) throw this.fail_("could not set up the host-forwarding NIC", `forwardPort(${hostPort}, ${guestPort})`, { command: cmd, status: r.status, output: shown(r), location });
          this.hostNic = true;
        }
        const out = await vm.qmp!.hmp(`hostfwd_add ${HOST_NIC.id} tcp:127.0.0.1:${hostPort}-${HOST_NIC.guestAddress}:${guestPort}`);
        if (out.trim()) throw this.fail_(`QEMU refused the forward: ${out.trim()}`, `forwardPort(${hostPort}, ${guestPort})`, { location, hint: "is the host port already in use?" });
      },
      this.name,
    );
  };

  private hostNic = false;

  // ---- interactive -------------------------------------------------------------

  /**
   * An interactive root shell on the machine (NixOS `shell_interact`): a login bash
   * on a real pseudo-terminal in the guest, so line editing, job control and Ctrl-C
   * work there. Resolves when the shell exits (`exit`, Ctrl-D) or on Ctrl-].
   */
  shell = async (): Promise<void> => {
    const location = callerLocation();
    const vm = await this.ensureUp();
    const term = (this.ctx.terminal ?? processTerminal)();
    const { output } = term;
    const sock = vm.shell!;
    const size = term.columns && term.rows ? `stty rows ${term.rows} cols ${term.columns}; ` : "";
    const termName = /^[\w.+-]+$/.test(process.env.TERM ?? "") ? process.env.TERM! : "xterm";
    const inner = `${size}export TERM=${termName}; infocmp >/dev/null 2>&1 || export TERM=xterm; cd /root; exec bash -l`;
    const cmd = `port=$(find_port vmrig.shell); exec script -qfec ${quote(inner)} /dev/null <>"$port" >&0 2>&0`;
    output.write(`[vmrig: root shell on ${this.name}; exit or Ctrl-D to leave, Ctrl-] to detach]\r\n`);
    const toGuest = (chunk: Buffer | string) => {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      const at = b.indexOf(DETACH);
      if (at >= 0) {
        if (at > 0) sock.write(b.subarray(0, at));
        vm.backdoor!.interrupt();
        return;
      }
      sock.write(b);
    };
    const toUser = (chunk: Buffer) => output.write(chunk);
    term.input.on("data", toGuest);
    sock.on("data", toUser);
    try {
      // No timeout: the shell lasts as long as the user wants it.
      const r = await this.runCommand(cmd, "shell()", location, Infinity);
      if (r.status !== 0 && r.status !== 137 && r.stderr.trim()) {
        throw this.fail_("the shell could not start", "shell()", { command: cmd, status: r.status, output: shown(r), location });
      }
    } finally {
      term.input.off("data", toGuest);
      sock.off("data", toUser);
      term.release?.();
      output.write(`\r\n[vmrig: left the shell on ${this.name}]\r\n`);
    }
  };

  // ---- logging -----------------------------------------------------------------

  log = (message: string): void => this.ctx.logger.log(message, this.name);

  nested = <T>(message: string, fn: () => Promise<T>): Promise<T> => this.ctx.logger.nested(message, fn, this.name);
}
