import type { NodeModule } from "../config/eval.js";
import { checkMachineNames, type TestContext } from "../session/context.js";

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
  checkMachineNames(`test ${def.name}`, Object.keys(def.nodes ?? {}), Object.keys(def.containers ?? {}));
}
