import * as commands from "./commands.js";
import { MachineCore, type ExecuteOptions, type ExecuteResult, type MachineContext } from "./core.js";
import * as display from "./display.js";
import * as faults from "./faults.js";
import * as files from "./files.js";
import * as network from "./network.js";
import { prepare } from "./boot-snapshot.js";
import * as pointer from "./pointer.js";
import * as power from "./power.js";
import * as qemu from "./qemu-control.js";
import { shell } from "./shell.js";
import * as systemd from "./systemd.js";
import * as terminals from "./terminals.js";
import * as x11 from "./x11.js";
import path from "node:path";
import type { QmpEvent } from "../vm/qmp.js";
import type { Video } from "./video.js";
import { callerLocation } from "../util/errors.js";

export type { ExecuteOptions, ExecuteResult, MachineContext, Pattern, Terminal } from "./core.js";
export type { Netem } from "./faults.js";
export type { ClickOptions, MouseButton } from "./pointer.js";
export type { Video } from "./video.js";
export { ScreenRecorder } from "./video.js";

/** Methods that need a VM: a container (SPEC §9) has all the others. */
export type VmOnlyMethod =
  | "screenshot"
  | "sendKey"
  | "sendChars"
  | "getScreenText"
  | "getScreenTextVariants"
  | "waitForText"
  | "sendConsole"
  | "getTtyText"
  | "waitUntilTtyMatches"
  | "dumpTtyContents"
  | "qmp"
  | "sendMonitorCommand"
  | "waitForQmpEvent"
  | "getScreenWords"
  | "clickText"
  | "moveMouse"
  | "click"
  | "drag"
  | "waitForX"
  | "getWindowNames"
  | "waitForWindow";

/** A machine declared under `containers`: the Machine API without screen, keys, virtual terminals or QMP. */
export type ContainerMachine = Omit<Machine, VmOnlyMethod>;

/**
 * One test machine: the Machine API of SPEC §3, each method in the file of its area
 * (commands, waiting, systemd, files, power, network, display, terminals, QEMU, shell).
 * Methods are function-valued properties, so destructuring them
 * (`const { succeed } = server`) keeps them bound.
 */
export class Machine {
  private readonly core: MachineCore;

  constructor(
    readonly name: string,
    ctx: MachineContext,
  ) {
    this.core = new MachineCore(name, ctx);
    this.core.start = () => power.start(this.core, undefined);
  }

  /** An area function bound to this machine, with the user's call site captured for its error reports. */
  private api<A extends unknown[], R>(
    fn: (m: MachineCore, location: string | undefined, ...args: A) => R,
  ): (...args: A) => R {
    // `this.core` is read at call time: field initialisers run before the constructor body.
    return (...args: A) => fn(this.core, callerLocation(), ...args);
  }

  /** @internal The QEMU process's PID while it runs, for the driver's leak checks. */
  get pid(): number | undefined {
    return this.core.guest?.running ? this.core.guest.pid : undefined;
  }

  /** QEMU start → backdoor answering of the last start, in ms. */
  get bootMs(): number | undefined {
    return this.core.guest?.bootMs;
  }

  /** QEMU start → backdoor and systemd both answering (what start() waits for), in ms. */
  get systemdReadyMs(): number | undefined {
    return this.core.systemdReadyMs;
  }

  /** How the last start went: "booted", or restored and from what. */
  get origin(): string | undefined {
    return this.core.guest?.origin;
  }

  /** @internal the shared state, for the driver's checkpoints */
  get internals(): MachineCore {
    return this.core;
  }

  // ---- power (power.ts) ---------------------------------------------------------

  /** Boot the machine, or restore its boot snapshot; resolves when its backdoor and systemd answer. Machines also start on first use. */
  start = this.api(power.start);
  /** Power off cleanly and wait until the VM has exited. The disk stays: a later `start()` boots from it. */
  shutdown = (): Promise<void> => power.shutdown(this.core);
  /** Kill the VM at once, like pulling the plug. The disk stays, with what the guest had written to it. */
  crash = (): Promise<void> => power.crash(this.core);
  /** Reboot (always allowed) and resolve when the machine's shell answers again. */
  reboot = this.api(power.reboot);
  /** Is the VM running and its shell answering? */
  isUp = (): Promise<boolean> => power.isUp(this.core);
  /** Wait until the machine has powered off by itself. */
  waitForShutdown = this.api(power.waitForShutdown);

  // ---- commands (commands.ts) ------------------------------------------------------

  /** Run `cmd` in bash as root (`set -euo pipefail`, cwd /root). Never throws on a non-zero status. */
  execute: (cmd: string, opts?: ExecuteOptions) => Promise<ExecuteResult> = this.api(commands.execute);
  /** Run each command; throw if one exits non-zero. Returns their stdout. */
  succeed = (...cmds: [string, ...(string | ExecuteOptions)[]]): Promise<string> =>
    commands.expectStatus(this.core, callerLocation(), cmds, "zero");
  /** Run each command; throw if one exits zero. Returns their stdout. */
  fail = (...cmds: [string, ...(string | ExecuteOptions)[]]): Promise<string> =>
    commands.expectStatus(this.core, callerLocation(), cmds, "nonzero");
  /** Retry `cmd` every second until it exits 0; returns its stdout. */
  waitUntilSucceeds = (cmd: string, timeout = 900): Promise<string> =>
    commands.retryCommand(this.core, callerLocation(), cmd, "zero", timeout);
  /** Retry `cmd` every second until it exits non-zero; returns its stdout. */
  waitUntilFails = (cmd: string, timeout = 900): Promise<string> =>
    commands.retryCommand(this.core, callerLocation(), cmd, "nonzero", timeout);
  /** Sleep `secs` seconds of guest time. */
  sleep = this.api(commands.sleepInGuest);

  // ---- systemd (systemd.ts) --------------------------------------------------------

  /** Wait until `unit` is active; throw at once if it fails, or if it is inactive and nothing will start it. */
  waitForUnit = this.api(systemd.waitForUnit);
  /** `systemctl ARGS` (for `user`: in that user's session manager). */
  systemctl = this.api(systemd.systemctl);
  /** `systemctl start UNIT`. */
  startJob = (unit: string, user?: string): Promise<ExecuteResult> =>
    systemd.systemctl(this.core, callerLocation(), `start ${unit}`, user);
  /** `systemctl stop UNIT`. */
  stopJob = (unit: string, user?: string): Promise<ExecuteResult> =>
    systemd.systemctl(this.core, callerLocation(), `stop ${unit}`, user);
  /** Every property of a unit, as `systemctl show` prints them. */
  getUnitInfo = this.api(systemd.getUnitInfo);
  /** One property of a unit; throws if it has none of that name. */
  getUnitProperty = this.api(systemd.getUnitProperty);
  /** Throw unless `unit` is in `state` (default "active") right now. */
  requireUnitState = this.api(systemd.requireUnitState);

  // ---- files (files.ts) ------------------------------------------------------------

  /** Wait until `path` exists in the guest. */
  waitForFile = this.api(files.waitForFile);
  /** Copy a host file or directory to `target` in the guest (binary-safe, any size). */
  copyFromHost = this.api(files.copyFromHost);
  /** Copy a guest file or directory to the host (default: the test's result folder); returns the host path. */
  copyFromMachine = this.api(files.copyFromMachine);

  // ---- network (network.ts) --------------------------------------------------------

  /** Wait until TCP `port` on `addr` (default localhost, seen from the guest) accepts connections. */
  waitForOpenPort = (port: number, addr = "localhost", timeout?: number): Promise<void> =>
    network.waitForPort(this.core, callerLocation(), port, addr, true, timeout);
  /** Wait until TCP `port` on `addr` refuses connections. */
  waitForClosedPort = (port: number, addr = "localhost", timeout?: number): Promise<void> =>
    network.waitForPort(this.core, callerLocation(), port, addr, false, timeout);
  /** Wait until a unix socket accepts connections. */
  waitForOpenUnixSocket = this.api(network.waitForOpenUnixSocket);
  /** Take the machine's vlan links down (it drops off every network). */
  block = (): Promise<void> => network.setLinks(this.core, false);
  /** Bring the machine's vlan links back up. */
  unblock = (): Promise<void> => network.setLinks(this.core, true);
  /**
   * Forward host TCP `hostPort` (on 127.0.0.1) to `guestPort`, or, given only the guest
   * port, a free host port; resolves to the host port. The guest still reaches nothing on the host.
   */
  forwardPort: {
    (guestPort: number): Promise<number>;
    (hostPort: number, guestPort: number): Promise<number>;
  } = this.api(network.forwardPort);
  /**
   * Delay, jitter (ms), lose or duplicate (percent) or rate-limit (kbit/s) every packet the
   * machine sends on its vlan links (`{ vlan }`: that link only), with the guest kernel's
   * netem; in effect when it resolves. `netem(null)` clears it.
   */
  netem = this.api(faults.netem);

  // ---- screen and keyboard (display.ts) --------------------------------------------

  /** Save a PNG of the screen in the result folder; returns its path. */
  screenshot = this.api(display.screenshot);
  /**
   * Press a key combination, QEMU `sendkey` syntax: "ctrl-alt-f1", "ret", "shift-a"; logged, then
   * `delay` seconds (default 0.01, as NixOS) before it resolves.
   */
  sendKey = this.api(display.sendKey);
  /** Type `text` on the keyboard (US layout), one key every `delay` seconds (default 0.01, as NixOS). */
  sendChars = this.api(display.sendChars);
  /** The text on the screen, read by OCR (needs `enableOCR: true`). */
  getScreenText = async (): Promise<string> =>
    (await display.readScreenText(this.core, "getScreenText()", callerLocation(), 1))[0]!;
  /** The screen read by OCR from three preparations of the image; a glyph one misreads another may get right. */
  getScreenTextVariants = (): Promise<string[]> =>
    display.readScreenText(this.core, "getScreenTextVariants()", callerLocation(), 3);
  /** Until OCR finds `pattern` on the screen (in any of the variants), reading it about once a second. */
  waitForText = this.api(display.waitForText);

  // ---- pointer (pointer.ts) ---------------------------------------------------------

  /** Move the pointer to (x, y), screen pixels from the top left (an absolute tablet); resolves once QEMU has delivered it. */
  moveMouse = this.api(pointer.moveMouse);
  /** Click `button` (default left; `double` for a double click) where the pointer is, or at (x, y). */
  click = this.api(pointer.click);
  /** Press the left button at `from`, move to `to` through a few points, release. */
  drag = this.api(pointer.drag);
  /** The words OCR reads on the screen, each with its box in screen pixels (needs `enableOCR: true`). */
  getScreenWords = this.api(display.getScreenWords);
  /**
   * Until OCR reads `pattern` on the screen (a word or a run of words on one line), then
   * click its centre. A pointer over the text hides letters: when nothing matches, the
   * pointer is moved to the bottom right corner and the screen read again.
   */
  clickText = this.api(display.clickText);

  // ---- X11 (x11.ts) ----------------------------------------------------------------

  /** Until the X server on :0 accepts clients and the session (its window manager) is up (needs `services.xserver.enable`); on GNOME, until gnome-shell has started and Xwayland's socket is there. */
  waitForX = this.api(x11.waitForX);
  /**
   * The names of every window on :0 (`xwininfo -root -tree`), as NixOS's `get_window_names`.
   * On GNOME (Wayland) the titles of gnome-shell's windows, through `org.gnome.Shell.Eval`:
   * GNOME answers it only when gnome-shell runs with `--unsafe-mode` (NixOS has no Wayland
   * answer at all); refused, the error shows the override that turns it on.
   */
  getWindowNames = this.api(x11.getWindowNames);
  /** Until a window whose name matches `pattern` exists on :0 (on GNOME: see `getWindowNames`). */
  waitForWindow = this.api(x11.waitForWindow);

  // ---- consoles and terminals (terminals.ts) ---------------------------------------

  /** Everything the serial console printed since the machine booted (a restored machine: since its saved boot). */
  getConsoleLog = (): string => this.core.guest?.console.all ?? "";
  /** Until the serial console (anything since boot) matches `pattern`; resolves with the match. */
  waitForConsoleText = this.api(terminals.waitForConsoleText);
  /** Write `text` to the serial console, as if typed there. */
  sendConsole = this.api(terminals.sendConsole);
  /** The text on virtual terminal `tty` (1-based), line-wrapped at its width. */
  getTtyText = this.api(terminals.getTtyText);
  /** Until virtual terminal `tty` shows text matching `pattern`. */
  waitUntilTtyMatches = this.api(terminals.waitUntilTtyMatches);
  /** Write the text of virtual terminal `tty` to the log. */
  dumpTtyContents = async (tty: number): Promise<void> => {
    this.core.log.log(
      `tty${tty}:\n${(await terminals.getTtyText(this.core, callerLocation(), tty)).trimEnd()}`,
      this.name,
    );
  };

  // ---- QEMU (qemu-control.ts) ------------------------------------------------------

  /** A QMP command, e.g. `qmp("query-status")`. */
  qmp = this.api(qemu.qmp);
  /** A QEMU human-monitor command, e.g. `sendMonitorCommand("info network")`. */
  sendMonitorCommand = this.api(qemu.sendMonitorCommand);
  /** The first QMP event (since the VM started) that `filter` accepts. */
  waitForQmpEvent: (filter: (e: QmpEvent) => boolean, timeout?: number) => Promise<QmpEvent> = this.api(
    qemu.waitForQmpEvent,
  );

  // ---- interactive (shell.ts) ------------------------------------------------------

  /**
   * An interactive root shell on the machine (NixOS `shell_interact`): a login bash
   * on a real pseudo-terminal in the guest, so line editing, job control and Ctrl-C
   * work there. Resolves when the shell exits (`exit`, Ctrl-D) or on Ctrl-].
   */
  shell = this.api(shell);

  // ---- logging -----------------------------------------------------------------------

  /** A line in the test's log, under this machine's name. */
  log = (message: string): void => this.core.log.log(message, this.name);
  /** Log `message`, run `fn` indented under it, and log how long it took. */
  nested = <T>(message: string, fn: () => Promise<T>): Promise<T> => this.core.nested(message, fn);

  /** @internal Stop the VM (the driver, at the end of a run). */
  async kill(): Promise<void> {
    await power.kill(this.core);
  }

  /** @internal `--video`: encode what was recorded into `dir`/video-NAME.webm (after the machine has stopped) */
  finishVideo(dir: string): Promise<Video | undefined> {
    return this.core.ctx.recorder?.encode(path.join(dir, `video-${this.name}.webm`)) ?? Promise.resolve(undefined);
  }

  /** @internal Load the machine's boot snapshot ahead of its first start (the driver, as a run begins). */
  prepare(): void {
    prepare(this.core);
  }
}
