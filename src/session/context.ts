import type { NodesInfo } from "../config/eval.js";
import type { ContainerMachine, Machine } from "../machine/machine.js";

export type {
  ContainerMachine,
  ExecuteOptions,
  ExecuteResult,
  Machine,
  MouseButton,
  Pattern,
  Terminal,
  Video,
} from "../machine/machine.js";
import { configError } from "../util/errors.js";

/** Script globals (SPEC §4). Function-valued properties: destructuring keeps them bound. */
export interface Globals<N extends string = string> {
  /** boot every machine, in parallel */
  startAll: () => Promise<void>;
  /** a named step: a JUnit test case of its own; a failure is reported and fails the run */
  subtest: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
  /** call `fn` until it returns true (it gets the attempt number), at most `timeout` seconds */
  retry: (fn: (lastTry: boolean) => Promise<boolean> | boolean, timeout?: number) => Promise<void>;
  /** a line in the test's log */
  log: (message: string) => void;
  /** wait until every machine has shut down by itself */
  joinAll: () => Promise<void>;
  /**
   * A condition that must keep holding: inside `during(body)` it is checked
   * (at most every `interval` seconds) before each machine command, and the
   * test fails as soon as it does not hold.
   */
  pollingCondition: (
    fn: () => Promise<boolean> | boolean,
    opts?: { interval?: number; description?: string },
  ) => PollingCondition;
  /** show the machines' serial consoles in the live output (the default) */
  serialStdoutOn: () => void;
  /** hide the machines' serial consoles from the live output (the log file keeps them) */
  serialStdoutOff: () => void;
  /**
   * Save every running machine at one instant (all paused together: memory, devices,
   * disks) under `name`; `restore(name)` brings them all back to it, any number of times.
   */
  snapshot: (name: string) => Promise<void>;
  /** Every machine back to the instant of `snapshot(name)`; machines that were not running then are stopped. */
  restore: (name: string) => Promise<void>;
  /**
   * Make every machine of `groupA` unreachable from every machine of `groupB` and back (their
   * vlan addresses dropped in both directions, other traffic untouched); in effect when it resolves.
   */
  partition: (groupA: (Machine | ContainerMachine)[], groupB: (Machine | ContainerMachine)[]) => Promise<void>;
  /** Undo every partition. */
  heal: () => Promise<void>;
  /**
   * Another machine of VM node `node` (NixOS's `create_machine`), not started: its own disk
   * from the node's image, the node's configuration and addresses (start it while the node
   * is down, or the two share an address), on the node's vlans. `name` defaults to
   * `<node>-2`, `<node>-3`…; `qemuOptions` are added to its QEMU command line. It boots on
   * first use, joins `machines`, and is stopped with the others.
   */
  createMachine: (node: N, opts?: { name?: string; qemuOptions?: string[] }) => Machine;
  /** every machine of the test, in name order (then the ones createMachine made) */
  machines: Machine[];
  /** every node's evaluated config: `nodes.server.config.services.nginx.enable` */
  nodes: NodesInfo<N>;
  /** the vlans in use, with their members */
  vlans: { vlan: number; members: string[] }[];
  /** the run: test name, result folder, accelerator */
  driver: DriverInfo;
}

export interface SubtestResult {
  name: string;
  outcome: "passed" | "failed";
  durationMs: number;
  /** when it began, ms after the test did (for the timeline) */
  startMs?: number;
  error?: string;
}

export interface PollingCondition {
  during: <T>(body: () => Promise<T>) => Promise<T>;
  check: () => Promise<void>;
}

export interface DriverInfo {
  testName: string;
  resultDir: string;
  accel: "kvm" | "tcg";
}

/** The script's argument: each node as a Machine, each container as a ContainerMachine (no screen, keys or QMP), and the globals. */
export type TestContext<N extends string = string, C extends string = string> = { [K in N]: Machine } & {
  [K in C]: ContainerMachine;
} & Globals<N | C>;

export const GLOBAL_NAMES = [
  "startAll",
  "joinAll",
  "subtest",
  "retry",
  "pollingCondition",
  "serialStdoutOn",
  "serialStdoutOff",
  "log",
  "snapshot",
  "restore",
  "partition",
  "heal",
  "createMachine",
  "machines",
  "vlans",
  "nodes",
  "driver",
] as const;

/** A machine name: a host name, with NixOS's '_' allowed (nixpkgs' timezone.nix has node_eutz). */
export const MACHINE_NAME = /^[a-z]([a-z0-9_-]{0,61}[a-z0-9])?$/i;

/** Machine names: at least one, one name space for nodes and containers, none a global's, each a host name. Said before anything is built. */
export function checkMachineNames(
  what: string,
  nodes: string[],
  containers: string[],
  reserved: readonly string[] = [],
): void {
  const names = [...nodes, ...containers];
  if (names.length === 0) throw configError(`${what}: declare at least one machine in \`nodes\` or \`containers\``);
  const both = nodes.find((n) => containers.includes(n));
  if (both !== undefined)
    throw configError(`${what}: \`${both}\` is declared in both \`nodes\` and \`containers\``, {
      hint: "machines share one name space: rename one of them",
    });
  for (const n of names) {
    if ([...GLOBAL_NAMES, ...reserved].includes(n)) {
      throw configError(`${what}: node name \`${n}\` collides with the script global of the same name`, {
        hint: "rename the node",
      });
    }
    // NixOS's networking.hostName allows '_' (nixpkgs' timezone.nix has node_eutz), and so do we
    if (!MACHINE_NAME.test(n)) {
      throw configError(
        `${what}: node name \`${n}\` is not a valid host name (letters, digits, '-' and '_', starting with a letter and ending with a letter or digit)`,
      );
    }
    if (n.includes("_") && containers.includes(n))
      throw configError(`${what}: container name \`${n}\` has a '_', which systemd-nspawn refuses in a machine name`, {
        hint: `rename it (${n.replace(/_/g, "-")}), or declare it under \`nodes\` (a VM may have a '_')`,
      });
  }
}
