// The public API of vmrig: what a test file imports.
export { defineTest } from "./driver/test.js";
export type { TestDefinition, TestContext, Globals, TestMeta } from "./driver/test.js";
export type { ContainerMachine } from "./machine/machine.js";
export { defineModule, lib } from "./config/eval.js";
export type { NodeConfig, NodeModule, EvaluatedConfig, ModuleArgs, NodesInfo, Lib } from "./config/eval.js";
export type { Machine, ExecuteOptions, ExecuteResult, Pattern } from "./machine/machine.js";
export { VmrigError } from "./util/errors.js";
