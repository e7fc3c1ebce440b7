import type { NodeModule, NodesInfo } from "../config/eval.js";
import { checkMachineNames, type TestContext } from "../session/context.js";
import { nodesInfo } from "../session/globals.js";
import { evaluateMachines } from "../session/topology.js";

export type { DriverInfo, Globals, PollingCondition, TestContext } from "../session/context.js";
export type { MachinesDefinition, Rig, StartOptions } from "../session/start.js";
import { configError } from "../util/errors.js";

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
  testScript: ((ctx: TestContext<NoInfer<N>, NoInfer<C>>) => Promise<void> | string) | string;
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
  checkMachineNames(`test ${def.name}`, Object.keys(def.nodes ?? {}), Object.keys(def.containers ?? {}));
}

/** Is this an `async` function (a TypeScript script), rather than one that makes a Python script? */
const isAsync = (fn: unknown): boolean =>
  (fn as { constructor?: { name?: string } })?.constructor?.name === "AsyncFunction";

/** A Python test (its script a string, or a plain function returning one), told before anything is evaluated. */
export function isPythonTest(def: TestDefinition): boolean {
  return typeof def.testScript === "string" || !isAsync(def.testScript);
}

/**
 * The Python text of a test, or undefined for a TypeScript script. A Python script may be
 * a function of the evaluated nodes, as NixOS's `testScript = { nodes, ... }: ''…''`
 * (`({ nodes }) => \`… ${nodes.machine.config.users.users.alice.uid} …\``): a function that
 * is not `async` is called with `nodes` only, before anything is built, and must return the
 * script. `nodes` is asked for only when the script is a function that needs it:
 * evaluating every node costs a check.
 */
export function pythonScriptOf(def: TestDefinition, nodes: () => NodesInfo): string | undefined {
  if (!isPythonTest(def)) return undefined;
  const script = def.testScript;
  if (typeof script === "string") return script;
  const only = new Proxy(
    { nodes: nodes() },
    {
      get: (target, key) => {
        if (key === "nodes") return target.nodes;
        if (typeof key === "symbol") return undefined;
        throw configError(
          `test ${def.name}: its testScript is not \`async\`, so it is taken as a function that returns a Python script, and it read \`${String(key)}\``,
          {
            hint: "a TypeScript script is `async testScript({ machine }) { … }`; a function that makes a Python script may read only `nodes`",
          },
        );
      },
    },
  );
  const text = (script as (ctx: unknown) => unknown)(only);
  if (typeof text !== "string")
    throw configError(
      `test ${def.name}: its testScript is not \`async\`, so it must return the Python script (a string), and it returned ${text instanceof Promise ? "a promise" : typeof text}`,
      { hint: "make a TypeScript script `async`, or return the Python text" },
    );
  return text;
}

/** The nodes' evaluated configs as a script reads them (`nodes.server.config.…`), before anything is built. */
export function nodesOf(def: TestDefinition): NodesInfo {
  return nodesInfo(evaluateMachines(def));
}
