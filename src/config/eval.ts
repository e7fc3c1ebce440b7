import type { Evaluated, Input, Prioritised } from "./dsl.js";
import { mergeOptions, optionPaths, PRIORITY, type Definition } from "./merge.js";
import { checkContainerDefinitions } from "./container.js";
import { nodeOptions, type NodeOptions } from "./options.js";
import { configError } from "../util/errors.js";

/** A node's configuration after every module is merged. */
export type EvaluatedConfig = Evaluated<NodeOptions>;

/** What a module may define: any subset of the options, plus imports. */
export type NodeConfig<N extends string = string> = Input<NodeOptions> & {
  imports?: NodeModule<N>[];
};

/** A node as other modules and scripts see it: its config, also under `config` (NixOS has both: `nodes.x.services…` and `nodes.x.config.services…`). */
export type NodeInfo = EvaluatedConfig & { config: EvaluatedConfig };

export type NodesInfo<N extends string = string> = { [K in N]: NodeInfo };

/** `c` as a NodeInfo: its options read through, `config` is `c` itself. */
export function nodeInfo(c: EvaluatedConfig): NodeInfo {
  return Object.assign(Object.create(c) as EvaluatedConfig, { config: c });
}

export interface ModuleArgs<N extends string = string> {
  /** this node's final configuration (NixOS's `config`) */
  config: EvaluatedConfig;
  /** every node's final configuration */
  nodes: NodesInfo<N>;
  lib: Lib;
  /** this node's name */
  name: string;
}

export type NodeModule<N extends string = string> = NodeConfig<N> | ((args: ModuleArgs<N>) => NodeConfig<N>);

export interface Lib {
  /** this definition wins over every normal one */
  mkForce<V>(value: V): Prioritised<V>;
  /** a fallback that any normal definition overrides */
  mkDefault<V>(value: V): Prioritised<V>;
  mkOverride<V>(priority: number, value: V): Prioritised<V>;
}

export const lib: Lib = {
  mkForce: (value) => lib.mkOverride(PRIORITY.force, value),
  mkDefault: (value) => lib.mkOverride(PRIORITY.default, value),
  mkOverride: (priority, value) => ({ _vmrigPriority: priority, value }),
};

/** Type-checks a module kept in its own file, so a production config can import it too. */
export function defineModule<N extends string = string>(module: NodeModule<N>): NodeModule<N> {
  return module;
}

const allPaths = optionPaths(nodeOptions);

interface Labelled {
  source: string;
  module: NodeModule;
}

interface ModuleFailure {
  source: string;
  error: unknown;
}

function flatten(entry: Labelled, args: ModuleArgs, out: Definition[], failures: ModuleFailure[], depth = 0): void {
  if (depth > 50) throw configError(`imports nest more than 50 deep at ${entry.source}: is a module importing itself?`);
  let cfg: NodeConfig;
  if (typeof entry.module === "function") {
    try {
      cfg = entry.module(args);
    } catch (error) {
      // Often a read of a value that a later round provides (Nix would be lazy here):
      // a module defining pools.web and reading pools.web.socket. This round, it gets
      // a config in which a missing value reads as empty, so what it defines becomes
      // visible; the round is not final until the module runs without that help.
      failures.push({ source: entry.source, error });
      try {
        cfg = withoutMissing(
          entry.module({ ...args, config: tolerant(args.config), nodes: tolerant(args.nodes) }),
        ) as NodeConfig;
      } catch {
        return;
      }
    }
  } else cfg = entry.module;
  if (cfg === null || typeof cfg !== "object") {
    throw configError(`${entry.source} is not a module: expected an attribute set or a function returning one`);
  }
  const { imports, ...rest } = cfg;
  if (imports !== undefined && !Array.isArray(imports))
    throw configError(`${entry.source}.imports must be a list of modules`);
  (imports ?? []).forEach((m, i) => {
    const name = typeof m === "function" && m.name ? ` (${m.name})` : "";
    flatten({ source: `${entry.source}.imports[${i}]${name}`, module: m }, args, out, failures, depth + 1);
  });
  out.push({ source: entry.source, value: rest, priority: PRIORITY.normal });
}

const MISSING = Symbol("vmrig.missing");

/** A stand-in for a value that does not exist yet: "" in a string, 0 in a number, empty when iterated. */
function missing(): unknown {
  const stand: unknown = new Proxy(function () {}, {
    get(_, prop) {
      if (prop === MISSING) return true;
      if (prop === Symbol.toPrimitive) return (hint: string) => (hint === "number" ? 0 : "");
      if (prop === Symbol.iterator) return function* () {};
      if (prop === "toString" || prop === "valueOf") return () => "";
      return stand;
    },
    apply: () => stand,
    has: () => false,
    ownKeys: () => [],
  });
  return stand;
}

function tolerant<T>(value: T): T {
  if (value === null || typeof value !== "object") return value;
  return new Proxy(value, {
    get(target, prop, receiver) {
      if (typeof prop === "symbol" || prop in target) return tolerant(Reflect.get(target, prop, receiver) as unknown);
      return missing();
    },
  });
}

const isMissing = (v: unknown) =>
  (typeof v === "function" || typeof v === "object") && v !== null && (v as { [MISSING]?: boolean })[MISSING] === true;

/** A module's output with every stand-in value left out (as if the option were not defined). */
function withoutMissing(v: unknown): unknown {
  if (Array.isArray(v)) return v.filter((e) => !isMissing(e)).map(withoutMissing);
  if (v === null || typeof v !== "object") return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([, e]) => !isMissing(e))
      .map(([k, e]) => [k, withoutMissing(e)]),
  );
}

/** The address vmrig gives node `index` (1-based, name order) on `vlan` (SPEC §5). */
export function vlanAddresses(vlan: number, index: number): { ipv4: string; ipv6: string } {
  return { ipv4: `192.168.${vlan}.${index}`, ipv6: `2001:db8:${vlan.toString(16)}::${index.toString(16)}` };
}

/** The user-mode NIC that `virtualisation.forwardPorts` and `forwardPort()` add: eth0, QEMU's default guest address. */
export const HOST_NIC = { name: "eth0", address: "10.0.2.15" } as const;

/**
 * What vmrig adds to every node, as NixOS's own modules would: the hostname, the
 * vlan addresses, the forwarding NIC, pool sockets, the SSH firewall opening.
 */
/** A Redis server's unit, account and runtime folder name: redis-NAME, or redis for "". */
export const redisName = (server: string): string => (server === "" ? "redis" : `redis-${server}`);

function builtinModule(name: string, index: number): NodeModule {
  return ({ config }) => {
    const interfaces: Record<
      string,
      {
        ipv4: { addresses: { address: string; prefixLength: number }[] };
        ipv6?: { addresses: { address: string; prefixLength: number }[] };
      }
    > = {};
    const forwarding = config.virtualisation.forwardPorts.length > 0;
    if (forwarding)
      interfaces[HOST_NIC.name] = { ipv4: { addresses: [{ address: HOST_NIC.address, prefixLength: 24 }] } };
    config.virtualisation.vlans.forEach((vlan, i) => {
      const a = vlanAddresses(vlan, index);
      interfaces[`eth${i + 1}`] = {
        ipv4: { addresses: [{ address: a.ipv4, prefixLength: 24 }] },
        ipv6: { addresses: [{ address: a.ipv6, prefixLength: 64 }] },
      };
    });
    const ssh = config.services.openssh;
    return {
      // Graphical machines need a DRM driver and input devices: Debian's full kernel (SPEC §2).
      boot: { kernelPackages: lib.mkDefault(config.services.xserver.enable ? "full" : "cloud") },
      services: {
        phpfpm: {
          pools: Object.fromEntries(
            Object.keys(config.services.phpfpm.pools).map((pool) => [pool, { socket: `/run/phpfpm/${pool}.sock` }]),
          ),
        },
        // NixOS's per-server defaults: the server named "" keeps Redis's own port and names
        redis: {
          servers: Object.fromEntries(
            Object.keys(config.services.redis.servers).map((server) => [
              server,
              {
                port: lib.mkDefault(server === "" ? 6379 : 0),
                unixSocket: lib.mkDefault(`/run/${redisName(server)}/redis.sock`),
                user: lib.mkDefault(redisName(server)),
              },
            ]),
          ),
        },
      },
      // each Redis server's own account and group (members of the group may use its socket)
      users: {
        users: Object.fromEntries(
          Object.values(config.services.redis.servers)
            .filter((s) => s.enable && s.user)
            .map((s) => [s.user, { isSystemUser: true, group: s.user }]),
        ),
        groups: Object.fromEntries(
          Object.values(config.services.redis.servers)
            .filter((s) => s.enable && s.user)
            .map((s) => [s.user, {}]),
        ),
      },
      networking: {
        hostName: lib.mkDefault(name),
        firewall: {
          allowedTCPPorts: ssh.enable && ssh.openFirewall ? ssh.ports : [],
          trustedInterfaces: forwarding ? [HOST_NIC.name] : [],
        },
        interfaces,
      },
    };
  };
}

/**
 * Evaluate every node. Function modules see the final config (theirs and the
 * other nodes'), as in NixOS; here by iterating to a fixpoint instead of laziness.
 */
/**
 * Evaluate every machine's modules together (one name space: a module's `nodes` holds them
 * all). Those named in `containers` are labelled `containers.NAME` and may not set options
 * that only a VM has.
 */
export function evalNodes(
  nodes: Record<string, NodeModule>,
  defaults?: NodeModule,
  containers: ReadonlySet<string> = new Set(),
): Record<string, EvaluatedConfig> {
  const names = Object.keys(nodes).sort();
  let current: Record<string, EvaluatedConfig> = Object.fromEntries(
    names.map((n) => [n, mergeOptions(nodeOptions, [], `nodes.${n}`, allPaths) as EvaluatedConfig]),
  );
  let previousJson = "";
  let failures: ModuleFailure[] = [];
  for (let round = 0; round < 8; round++) {
    const nodesArg = Object.fromEntries(names.map((n) => [n, nodeInfo(current[n]!)])) as NodesInfo;
    const next: Record<string, EvaluatedConfig> = {};
    failures = [];
    for (const [i, name] of names.entries()) {
      const args: ModuleArgs = { config: current[name]!, nodes: nodesArg, lib, name };
      const defs: Definition[] = [];
      flatten({ source: "vmrig's built-in network module", module: builtinModule(name, i + 1) }, args, defs, failures);
      if (defaults !== undefined) flatten({ source: "defaults", module: defaults }, args, defs, failures);
      const label = `${containers.has(name) ? "containers" : "nodes"}.${name}`;
      flatten({ source: label, module: nodes[name]! }, args, defs, failures);
      if (containers.has(name)) checkContainerDefinitions(name, defs);
      next[name] = mergeOptions(nodeOptions, defs, label, allPaths) as EvaluatedConfig;
    }
    const json = JSON.stringify(next);
    current = next;
    if (json === previousJson) {
      // Settled. A module still failing now fails for good.
      const f = failures[0];
      if (f) {
        throw configError(
          `${f.source}: the module threw: ${f.error instanceof Error ? f.error.message : String(f.error)}`,
          {
            hint: "a module may read `config` and `nodes`, but only options that exist (see docs/options.md)",
            cause: f.error,
          },
        );
      }
      for (const n of names) checkNode(`${containers.has(n) ? "containers" : "nodes"}.${n}`, current[n]!);
      return current;
    }
    previousJson = json;
  }
  throw configError("node configurations do not settle: a module's output keeps changing with its input", {
    hint: "a function module should not derive an option from the same option",
  });
}

/** Checks that span several options, made before anything is built (`name`: nodes.X or containers.X). */
function checkNode(name: string, c: EvaluatedConfig): void {
  c.virtualisation.forwardPorts.forEach((f, i) => {
    const at = `${name}.virtualisation.forwardPorts[${i}]`;
    if (!(f.host.port > 0 && f.host.port < 65536) || !(f.guest.port > 0 && f.guest.port < 65536)) {
      throw configError(`${at} needs host.port and guest.port (1–65535), got ${f.host.port} and ${f.guest.port}`);
    }
    if (f.from === "guest" && !f.guest.address) {
      throw configError(`${at}: a forward from the guest needs guest.address, the address the guest connects to`, {
        hint: 'an address in 10.0.2.0/24 other than 10.0.2.15, e.g. guest.address = "10.0.2.100"',
      });
    }
    if (f.from === "guest" && f.proto !== "tcp") throw configError(`${at}: QEMU forwards only TCP from the guest`);
  });
  c.virtualisation.emptyDiskImages.forEach((mib, i) => {
    if (!(mib > 0))
      throw configError(
        `${name}.virtualisation.emptyDiskImages[${i}] must be a size in MiB greater than 0, got ${mib}`,
      );
  });
}
