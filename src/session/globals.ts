import { nodeInfo, type EvaluatedConfig, type NodesInfo } from "../config/eval.js";
import { checkpointDir, restoreCheckpoint, takeCheckpoint, type Checkpoint } from "../machine/checkpoint.js";
import { healPartitions, isolateFrom } from "../machine/faults.js";
import type { ContainerMachine, Machine } from "../machine/machine.js";
import { poll } from "../util/poll.js";
import { VmrigError, callerLocation, errorMessage } from "../util/errors.js";
import type { Logger } from "./logger.js";
import { GLOBAL_NAMES, MACHINE_NAME, type Globals, type SubtestResult, type TestContext } from "./context.js";

// The script's context (SPEC §4): one Machine per node and the globals over them.

export interface ActiveCondition {
  fn: () => Promise<boolean> | boolean;
  description: string;
  interval: number;
  lastCheck: number;
  checking: boolean;
}

export async function checkConditions(conditions: Set<ActiveCondition>): Promise<void> {
  for (const c of conditions) {
    if (c.checking || Date.now() - c.lastCheck < c.interval * 1000) continue;
    c.checking = true; // the condition's own commands must not re-enter it
    try {
      c.lastCheck = Date.now();
      if (!(await c.fn()))
        throw new VmrigError(`polling condition failed: ${c.description}`, { call: "pollingCondition()" });
    } finally {
      c.checking = false;
    }
  }
}

/** Every node's evaluated config as a script reads it: `nodes.server.config.services.nginx.enable`. */
export function nodesInfo(configs: Record<string, EvaluatedConfig>): NodesInfo {
  return Object.fromEntries(Object.entries(configs).map(([n, c]) => [n, nodeInfo(c)]));
}

/**
 * `createMachine(node, { name, qemuOptions })`: checked here, before anything starts: a VM
 * node that exists, and a name that is free and a valid host name.
 */
function createMachineGlobal(
  machines: Machine[],
  logger: Logger,
  vms: { vmNodes: string[]; addMachine: (node: string, name: string, qemuOptions: string[]) => Machine },
): Globals["createMachine"] {
  const { vmNodes } = vms;
  return (node, opts = {}) => {
    const location = callerLocation();
    const call = `createMachine(${JSON.stringify(node)}${opts.name ? `, { name: ${JSON.stringify(opts.name)} }` : ""})`;
    if (!vmNodes.includes(node))
      throw new VmrigError(`there is no VM node called ${JSON.stringify(node)}`, {
        call,
        location,
        hint: `createMachine makes another machine of a declared VM node (as NixOS, not of a container): ${vmNodes.join(", ") || "this test has none"}`,
      });
    const taken = new Set(machines.map((m) => m.name));
    let name = opts.name;
    for (let k = 2; name === undefined; k++) if (!taken.has(`${node}-${k}`)) name = `${node}-${k}`;
    if (taken.has(name) || GLOBAL_NAMES.includes(name as (typeof GLOBAL_NAMES)[number]))
      throw new VmrigError(`a machine called ${JSON.stringify(name)} exists already`, {
        call,
        location,
        hint: "give the new machine a name of its own: createMachine(node, { name }) (NixOS reuses a stopped machine's disk under its name; vmrig gives each machine its own)",
      });
    if (!MACHINE_NAME.test(name))
      throw new VmrigError(`${JSON.stringify(name)} is not a valid machine name`, {
        call,
        location,
        hint: "letters, digits, '-' and '_', starting with a letter and ending with a letter or digit",
      });
    const m = vms.addMachine(node, name, opts.qemuOptions ?? []);
    logger.log(
      `created machine ${name} of node ${node}${opts.qemuOptions?.length ? ` (QEMU: ${opts.qemuOptions.join(" ")})` : ""}`,
    );
    return m;
  };
}

export function makeContext(
  machines: Machine[],
  configs: Record<string, EvaluatedConfig>,
  logger: Logger,
  subtests: SubtestResult[],
  extra: {
    conditions: Set<ActiveCondition>;
    vlans: Globals["vlans"];
    driver: Globals["driver"];
    stateDir: string;
    vms: { vmNodes: string[]; addMachine: (node: string, name: string, qemuOptions: string[]) => Machine };
  },
): TestContext {
  const checkpoints = new Map<string, Checkpoint>();
  const nodes = nodesInfo(configs);
  const globals: Globals = {
    startAll: async () => {
      await logger.nested("starting all machines", async () => {
        await Promise.all(machines.map((m) => m.start()));
      });
    },
    subtest: async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      const start = Date.now();
      const startMs = start - logger.startedAt;
      try {
        const r = await logger.nested(`subtest: ${name}`, fn);
        subtests.push({ name, outcome: "passed", durationMs: Date.now() - start, startMs });
        return r;
      } catch (e) {
        subtests.push({
          name,
          outcome: "failed",
          durationMs: Date.now() - start,
          startMs,
          error: errorMessage(e),
        });
        throw e;
      }
    },
    retry: async (fn, timeout = 900) => {
      const location = callerLocation();
      await poll(
        timeout,
        async (lastTry) => ({ done: await fn(lastTry) }),
        () => new VmrigError(`retry: condition still false after ${timeout} s`, { call: "retry()", location }),
      );
    },
    log: (message) => logger.log(message),
    joinAll: async () => {
      await logger.nested("waiting for all machines to shut down", async () => {
        await Promise.all(machines.map((m) => m.waitForShutdown()));
      });
    },
    pollingCondition: (fn, opts = {}) => {
      const cond: ActiveCondition = {
        fn,
        description: opts.description ?? (fn.name || "condition"),
        interval: opts.interval ?? 0,
        lastCheck: 0,
        checking: false,
      };
      return {
        check: () => checkConditions(new Set([{ ...cond, lastCheck: 0 }])),
        during: async (body) => {
          extra.conditions.add(cond);
          try {
            return await body();
          } finally {
            extra.conditions.delete(cond);
          }
        },
      };
    },
    snapshot: async (name) => {
      await logger.nested(`checkpoint "${name}": saving every running machine at one instant`, async () => {
        checkpoints.set(
          name,
          await takeCheckpoint(
            machines.map((m) => m.internals),
            checkpointDir(extra.stateDir),
            name,
          ),
        );
      });
    },
    restore: async (name) => {
      const location = callerLocation();
      const cp = checkpoints.get(name);
      if (!cp) {
        throw new VmrigError(`there is no checkpoint named ${JSON.stringify(name)}`, {
          call: `restore(${JSON.stringify(name)})`,
          location,
          hint: checkpoints.size
            ? `checkpoints of this run: ${[...checkpoints.keys()].map((k) => JSON.stringify(k)).join(", ")}`
            : "save one first with snapshot(name)",
        });
      }
      await logger.nested(`restoring checkpoint "${name}"`, () => restoreCheckpoint(cp, checkpointDir(extra.stateDir)));
    },
    partition: async (groupA, groupB) => {
      const call = `partition([${groupA.map((m) => m.name).join(", ")}], [${groupB.map((m) => m.name).join(", ")}])`;
      const addresses = (group: (Machine | ContainerMachine)[]) =>
        group.flatMap((m) =>
          Object.entries(configs[m.name]!.networking.interfaces)
            // eth0 is the host-forwarding NIC, the same 10.0.2.15 on every machine that has one
            .filter(([name]) => name !== "eth0")
            .flatMap(([, i]) => [...i.ipv4.addresses, ...i.ipv6.addresses].map((a) => a.address)),
        );
      await logger.nested(
        `partition: ${groupA.map((m) => m.name).join(", ")} | ${groupB.map((m) => m.name).join(", ")}`,
        async () => {
          await Promise.all([
            ...groupA.map((m) => isolateFrom(m.internals, addresses(groupB), call)),
            ...groupB.map((m) => isolateFrom(m.internals, addresses(groupA), call)),
          ]);
          logger.mark(
            "fault",
            `partition ${groupA.map((m) => m.name).join(", ")} | ${groupB.map((m) => m.name).join(", ")}`,
          );
        },
      );
    },
    heal: async () => {
      await logger.nested("heal: every partition undone", async () => {
        await Promise.all(
          machines.filter((m) => m.pid !== undefined).map((m) => healPartitions(m.internals, "heal()")),
        );
        logger.mark("fault", "heal");
      });
    },
    serialStdoutOn: () => {
      logger.serialStdout = true;
    },
    serialStdoutOff: () => {
      logger.serialStdout = false;
    },
    createMachine: createMachineGlobal(machines, logger, extra.vms),
    machines,
    nodes,
    vlans: extra.vlans,
    driver: extra.driver,
  };
  const byName: Record<string, Machine> = Object.fromEntries(machines.map((m) => [m.name, m]));
  return { ...byName, ...globals } as TestContext;
}
