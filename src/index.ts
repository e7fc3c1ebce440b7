// The public API of vmrig: what a test file imports.
export { defineTest } from "./runner/test.js";
export type { TestDefinition, TestContext, Globals, TestMeta } from "./runner/test.js";
export type { ContainerMachine } from "./machine/machine.js";
export { defineModule, lib } from "./config/eval.js";
export type { NodeConfig, NodeModule, EvaluatedConfig, ModuleArgs, NodesInfo, Lib } from "./config/eval.js";
export type { Machine, ExecuteOptions, ExecuteResult, Pattern } from "./machine/machine.js";
export { VmrigError } from "./util/errors.js";
// Machines in other test runners (SPEC §12)
export { startMachines } from "./session/start.js";
export type { MachinesDefinition, Rig, StartOptions } from "./session/start.js";
export type { SubtestResult, PollingCondition, DriverInfo } from "./session/context.js";
