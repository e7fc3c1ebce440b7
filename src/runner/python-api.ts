import type { Machine, MouseButton } from "../session/context.js";

// The NixOS driver's Machine API in snake_case (SPEC §11), each method mapped onto the one
// TypeScript implementation: positional arguments and keywords as NixOS names them.
// Timeouts arrive in seconds (the Python side turns a `timedelta` into seconds).

/** A Python call's arguments: positional ones, then keywords. */
export class PyArgs {
  constructor(
    readonly method: string,
    private readonly args: unknown[],
    private readonly kwargs: Record<string, unknown>,
  ) {}

  /** Argument `i`, or keyword `name`, or `fallback`. */
  get<T>(i: number, name: string, fallback?: T): T {
    if (name in this.kwargs) return this.kwargs[name] as T;
    if (i < this.args.length) return this.args[i] as T;
    if (fallback === undefined && arguments.length < 3)
      throw new TypeError(`${this.method}() missing required argument: '${name}'`);
    return fallback as T;
  }

  /** Every positional argument from `i` on. */
  rest(i: number): unknown[] {
    return this.args.slice(i);
  }

  opt(name: string): unknown {
    return this.kwargs[name];
  }
}

type Method = (m: Machine, a: PyArgs) => Promise<unknown>;

const timeout = (a: PyArgs, i: number, fallback = 900): number => Number(a.get(i, "timeout", fallback));
/** NixOS's `delay=None` is no pause. */
const keyDelay = (v: unknown): number => (v === null ? 0 : Number(v));
const user = (a: PyArgs, i: number): string | undefined => a.get<string | null>(i, "user", null) ?? undefined;

/** The commands variants: each command runs in turn, `timeout` per command. */
function commands(a: PyArgs): [string, ...(string | { timeout?: number })[]] {
  const cmds = a.rest(0).map(String);
  const t = a.opt("timeout");
  const out: (string | { timeout?: number })[] = [...cmds];
  if (t !== undefined && t !== null) out.push({ timeout: Number(t) });
  return out as [string, ...(string | { timeout?: number })[]];
}

export const PYTHON_METHODS: Record<string, Method> = {
  start: (m) => m.start(),
  shutdown: (m) => m.shutdown(),
  crash: (m) => m.crash(),
  reboot: (m) => m.reboot(),
  is_up: (m) => m.isUp(),
  wait_for_shutdown: (m, a) => m.waitForShutdown(timeout(a, 0)),
  execute: async (m, a) => {
    const t = a.get<number | null>(3, "timeout", null);
    const r = await m.execute(a.get<string>(0, "command"), {
      ...(t !== null ? { timeout: Number(t) } : {}),
      checkOutput: a.get(2, "check_output", true),
    });
    return [r.status, r.stdout];
  },
  succeed: (m, a) => m.succeed(...commands(a)),
  fail: (m, a) => m.fail(...commands(a)),
  wait_until_succeeds: (m, a) => m.waitUntilSucceeds(a.get(0, "command"), timeout(a, 1)),
  wait_until_fails: (m, a) => m.waitUntilFails(a.get(0, "command"), timeout(a, 1)),
  sleep: (m, a) => m.sleep(Number(a.get(0, "secs"))),
  wait_for_unit: (m, a) => {
    const u = user(a, 1);
    return m.waitForUnit(a.get(0, "unit"), { timeout: timeout(a, 2), ...(u ? { user: u } : {}) });
  },
  systemctl: async (m, a) => {
    const r = await m.systemctl(a.get(0, "q"), user(a, 1));
    return [r.status, r.stdout];
  },
  start_job: async (m, a) => {
    const r = await m.startJob(a.get(0, "jobname"), user(a, 1));
    return [r.status, r.stdout];
  },
  stop_job: async (m, a) => {
    const r = await m.stopJob(a.get(0, "jobname"), user(a, 1));
    return [r.status, r.stdout];
  },
  get_unit_info: (m, a) => m.getUnitInfo(a.get(0, "unit"), user(a, 1)),
  get_unit_property: (m, a) => m.getUnitProperty(a.get(0, "unit"), a.get(1, "property"), user(a, 2)),
  require_unit_state: (m, a) => m.requireUnitState(a.get(0, "unit"), a.get(1, "require_state", "active")),
  wait_for_file: (m, a) => m.waitForFile(a.get(0, "filename"), timeout(a, 1)),
  wait_for_open_port: (m, a) =>
    m.waitForOpenPort(Number(a.get(0, "port")), a.get(1, "addr", "localhost"), timeout(a, 2)),
  wait_for_closed_port: (m, a) =>
    m.waitForClosedPort(Number(a.get(0, "port")), a.get(1, "addr", "localhost"), timeout(a, 2)),
  wait_for_open_unix_socket: (m, a) => m.waitForOpenUnixSocket(a.get(0, "addr"), timeout(a, 2)),
  copy_from_host: (m, a) => m.copyFromHost(a.get(0, "source"), a.get(1, "target")),
  copy_from_vm: async (m, a) => {
    const dir = a.get<string>(1, "target_dir", "");
    return m.copyFromMachine(a.get(0, "source"), ...(dir ? [dir] : []));
  },
  block: (m) => m.block(),
  unblock: (m) => m.unblock(),
  forward_port: (m, a) => m.forwardPort(Number(a.get(0, "host_port", 8080)), Number(a.get(1, "guest_port", 80))),
  screenshot: (m, a) => m.screenshot(a.get(0, "filename")),
  send_key: (m, a) =>
    m.sendKey(a.get(0, "key"), { delay: keyDelay(a.get(1, "delay", 0.01)), log: Boolean(a.get(2, "log", true)) }),
  send_chars: (m, a) => m.sendChars(a.get(0, "chars"), { delay: keyDelay(a.get(1, "delay", 0.01)) }),
  send_console: (m, a) => m.sendConsole(a.get(0, "chars")),
  send_monitor_command: (m, a) => m.sendMonitorCommand(a.get(0, "command")),
  get_screen_text: (m) => m.getScreenText(),
  get_screen_text_variants: (m) => m.getScreenTextVariants(),
  wait_for_text: (m, a) => m.waitForText(a.get(0, "regex"), timeout(a, 1)),
  // vmrig's own, in NixOS's naming (nixpkgs #156067 asks for them): words with their boxes, a click on one
  get_screen_words: (m) => m.getScreenWords(),
  click_text: (m, a) => m.clickText(a.get(0, "regex"), { timeout: timeout(a, 1) }),
  move_mouse: (m, a) => m.moveMouse(Number(a.get(0, "x")), Number(a.get(1, "y"))),
  click: (m, a) => {
    const x = a.get<number | null>(0, "x", null);
    const y = a.get<number | null>(1, "y", null);
    const opts = { button: a.get<MouseButton>(2, "button", "left"), double: a.get(3, "double", false) };
    return x === null || y === null ? m.click(undefined, undefined, opts) : m.click(Number(x), Number(y), opts);
  },
  drag: (m, a) => {
    const [fx, fy] = a.get<number[]>(0, "start");
    const [tx, ty] = a.get<number[]>(1, "end");
    return m.drag({ x: Number(fx), y: Number(fy) }, { x: Number(tx), y: Number(ty) });
  },
  wait_for_x: (m, a) => m.waitForX(timeout(a, 0)),
  get_window_names: (m) => m.getWindowNames(),
  wait_for_window: (m, a) => m.waitForWindow(a.get(0, "regexp"), timeout(a, 1)),
  wait_for_console_text: (m, a) => m.waitForConsoleText(a.get(0, "regex"), timeout(a, 1)),
  get_console_log: (m) => Promise.resolve(m.getConsoleLog()),
  get_tty_text: (m, a) => m.getTtyText(Number(a.get(0, "tty"))),
  wait_until_tty_matches: (m, a) => m.waitUntilTtyMatches(Number(a.get(0, "tty")), a.get(1, "regexp"), timeout(a, 2)),
  dump_tty_contents: (m, a) => m.dumpTtyContents(Number(a.get(0, "tty"))),
  shell_interact: (m) => m.shell(),
  log: (m, a) => Promise.resolve(m.log(String(a.get(0, "msg")))),
};

/**
 * NixOS's `create_machine(start_command)`: the node is read from the start script's name,
 * `…/bin/run-<node>-vm`, as NixOS names the machine (vmrig's
 * `${nodes.x.system.build.vm}/bin/run-x-vm`); the words after it are QEMU options.
 */
export function parseStartCommand(command: string): { node: string; qemuOptions: string[] } | undefined {
  const words = command.trim().split(/\s+/);
  const at = words.findIndex((w) => /(?:^|\/)run-.+-vm$/.test(w));
  if (at < 0) return undefined;
  const node = /(?:^|\/)run-(.+)-vm$/.exec(words[at]!)![1]!;
  return { node, qemuOptions: words.slice(at + 1) };
}
