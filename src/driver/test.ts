import type { NodeModule, NodesInfo } from "../config/eval.js";
import type { ContainerMachine, Machine } from "../machine/machine.js";
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
  /** every machine of the test, in name order */
  machines: Machine[];
  /** every node's evaluated config: `nodes.server.config.services.nginx.enable` */
  nodes: NodesInfo<N>;
  /** the vlans in use, with their members */
  vlans: { vlan: number; members: string[] }[];
  /** the run: test name, result folder, accelerator */
  driver: DriverInfo;
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
  "machines",
  "vlans",
  "nodes",
  "driver",
] as const;

export interface TestMeta {
  /** seconds for the whole test (overrides globalTimeout when smaller) */
  timeout?: number;
  /** listed and skipped */
  broken?: boolean;
  description?: string;
}

export interface TestDefinition<N extends string = string, C extends string = string> {
  name: string;
  // NoInfer: only the keys of `nodes` and `containers` name the machines. A module typed
  // for any node names (defineModule() without a type argument) must not widen N to string.
  /** machines that run as QEMU VMs */
  nodes?: { [K in N]: NodeModule<NoInfer<N | C>> };
  /** machines that run as systemd-nspawn containers (SPEC §9): the same options where they apply, native speed */
  containers?: { [K in C]: NodeModule<NoInfer<N | C>> };
  defaults?: NodeModule<NoInfer<N | C>>;
  /**
   * The script: an async function of the machines and globals, or a string — the Python
   * text of a NixOS test, run unchanged with NixOS's snake_case API (SPEC §11).
   */
  testScript: ((ctx: TestContext<NoInfer<N>, NoInfer<C>>) => Promise<void>) | string;
  /** seconds, default 3600; counts from the first VM start */
  globalTimeout?: number;
  enableOCR?: boolean;
  skipTypeCheck?: boolean;
  skipLint?: boolean;
  meta?: TestMeta;
}

const BRAND = Symbol.for("vmrig.test");

/**
 * Declare a test. Node and container names become the machines' variables in the script,
 * so a typo in a destructured name is a compile error, and so is a screen or QMP call on
 * a container.
 */
export function defineTest<const N extends string = never, const C extends string = never>(
  def: TestDefinition<N, C>,
): TestDefinition<N, C> {
  validateDefinition(def as unknown as TestDefinition);
  Object.defineProperty(def, BRAND, { value: true });
  return def;
}

export function isTestDefinition(x: unknown): x is TestDefinition {
  return typeof x === "object" && x !== null && (x as Record<symbol, unknown>)[BRAND] === true;
}

/** Every machine of a test, nodes and containers, in name order. */
export function machineNames(def: { nodes?: object | undefined; containers?: object | undefined }): string[] {
  return [...Object.keys(def.nodes ?? {}), ...Object.keys(def.containers ?? {})].sort();
}

export function validateDefinition(def: TestDefinition): void {
  if (typeof def.name !== "string" || !/^[a-z0-9-]+$/.test(def.name)) {
    throw configError(`test name ${JSON.stringify(def.name)} must match [a-z0-9-]+ (it names the result folder)`);
  }
  if (typeof def.testScript !== "function" && typeof def.testScript !== "string")
    throw configError(`test ${def.name}: testScript must be an async function or a Python script (a string)`);
  const nodes = Object.keys(def.nodes ?? {});
  const containers = Object.keys(def.containers ?? {});
  const names = [...nodes, ...containers];
  if (names.length === 0)
    throw configError(`test ${def.name}: declare at least one machine in \`nodes\` or \`containers\``);
  const both = nodes.find((n) => containers.includes(n));
  if (both !== undefined)
    throw configError(`test ${def.name}: \`${both}\` is declared in both \`nodes\` and \`containers\``, {
      hint: "machines share one name space: rename one of them",
    });
  for (const n of names) {
    if ((GLOBAL_NAMES as readonly string[]).includes(n)) {
      throw configError(`test ${def.name}: node name \`${n}\` collides with the script global of the same name`, {
        hint: "rename the node",
      });
    }
    if (!/^[a-z][a-z0-9-]{0,62}$/i.test(n)) {
      throw configError(`test ${def.name}: node name \`${n}\` is not a valid host name (letters, digits, '-')`);
    }
  }
}
