import type { Evaluated, Input, Prioritised } from "./dsl.js";
import { mergeOptions, optionPaths, ORDER, PRIORITY, type Definition } from "./merge.js";
import { checkContainerDefinitions } from "./container.js";
import { nodeOptions, type NodeOptions } from "./options.js";
import { option, t } from "./dsl.js";
import { suggest } from "../util/suggest.js";
import { configError } from "../util/errors.js";

/** A node's configuration after every module is merged. */
export type EvaluatedConfig = Evaluated<NodeOptions> & {
  /** the node's alternative configurations, each evaluated (NixOS's `specialisation`) */
  specialisation: Record<string, EvaluatedSpecialisation>;
  system: Evaluated<NodeOptions>["system"] & {
    build: {
      /**
       * The configuration's folder in the guest (NixOS's `system.build.toplevel`): its
       * `bin/switch-to-configuration test|switch` switches the running machine to it,
       * `specialisation/<name>/bin/switch-to-configuration` to one of its specialisations.
       */
      toplevel: string;
      /**
       * The node's VM as NixOS's scripts name it for `create_machine`:
       * `${nodes.x.system.build.vm}/bin/run-x-vm` is another machine of this node.
       */
      vm: string;
    };
  };
};

export interface EvaluatedSpecialisation {
  inheritParentConfig: boolean;
  configuration: EvaluatedConfig;
}

/**
 * An alternative configuration of a node (NixOS's `specialisation.<name>`), built into its
 * image; `switch-to-configuration` switches a running machine to it.
 */
export interface SpecialisationInput<N extends string = string> {
  /** a module: with `inheritParentConfig`, added to the node's own modules */
  configuration: NodeModule<N>;
  /** start from the node's configuration (true, the default) or from vmrig's defaults alone */
  inheritParentConfig?: boolean;
}

/** What a module may define: any subset of the options, plus imports and specialisations. */
export type NodeConfig<N extends string = string> = Input<NodeOptions> & {
  imports?: NodeModule<N>[];
  specialisation?: Record<string, SpecialisationInput<N>>;
};

/** The guest folder of a node's configuration: NixOS's toplevel, with vmrig's switch script in it. */
export const TOPLEVEL = "/usr/lib/vmrig/system";

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
  mkForce<V>(value: V | Prioritised<V>): Prioritised<V>;
  /** a fallback that any normal definition overrides */
  mkDefault<V>(value: V | Prioritised<V>): Prioritised<V>;
  mkOverride<V>(priority: number, value: V | Prioritised<V>): Prioritised<V>;
  /** a list whose elements go before (lower) or after (higher) other definitions' (a plain one is 1000) */
  mkOrder<V extends unknown[]>(order: number, value: V): Prioritised<V>;
  /** `mkOrder(500, …)`: before the elements of plain definitions */
  mkBefore<V extends unknown[]>(value: V): Prioritised<V>;
  /** `mkOrder(1500, …)`: after them */
  mkAfter<V extends unknown[]>(value: V): Prioritised<V>;
  /** a command for `environment.systemPackages`: /usr/local/bin/NAME holding `text` (NixOS's `pkgs.writeScriptBin`) */
  writeScriptBin(name: string, text: string): ScriptPackage;
  /**
   * a desktop entry started at every graphical login, for `environment.systemPackages`:
   * the package's /usr/share/applications/NAME.desktop copied to /etc/xdg/autostart (NixOS's
   * `pkgs.makeAutostartItem`; Debian names the entry after the package: `firefox-esr`)
   */
  makeAutostartItem(item: { name: string; package: string }): AutostartItem;
}

/** A script in `environment.systemPackages` (`lib.writeScriptBin`). */
export interface ScriptPackage {
  name: string;
  text: string;
}

/** A desktop entry in `environment.systemPackages` (`lib.makeAutostartItem`). */
export interface AutostartItem {
  autostart: string;
  package: string;
}

type SystemPackage = string | ScriptPackage | AutostartItem;

/** The Debian packages of a `systemPackages` list: its names, and the packages its autostart items come from. */
export function debianPackages(list: readonly SystemPackage[]): string[] {
  return list.flatMap((p) => (typeof p === "string" ? [p] : "autostart" in p ? [p.package] : []));
}

/** The scripts of a `systemPackages` list. */
export function scriptPackages(list: readonly SystemPackage[]): ScriptPackage[] {
  return list.filter((p): p is ScriptPackage => typeof p !== "string" && "text" in p);
}

/** The autostart items of a `systemPackages` list. */
export function autostartItems(list: readonly SystemPackage[]): AutostartItem[] {
  return list.filter((p): p is AutostartItem => typeof p !== "string" && "autostart" in p);
}

export const lib: Lib = {
  mkForce: (value) => lib.mkOverride(PRIORITY.force, value),
  mkDefault: (value) => lib.mkOverride(PRIORITY.default, value),
  // (the value may itself be wrapped: merge reads every wrapper, the innermost priority wins)
  mkOverride: <V>(priority: number, value: V | Prioritised<V>) =>
    ({ _vmrigPriority: priority, value }) as Prioritised<V>,
  // typed as a prioritised value so every option accepts it; merge reads its order, not a priority
  mkOrder: <V extends unknown[]>(order: number, value: V) =>
    ({ _vmrigOrder: order, value }) as unknown as Prioritised<V>,
  mkBefore: (value) => lib.mkOrder(ORDER.before, value),
  mkAfter: (value) => lib.mkOrder(ORDER.after, value),
  writeScriptBin: (name, text) => {
    if (!/^[A-Za-z0-9._+-]+$/.test(name))
      throw configError(`lib.writeScriptBin: ${JSON.stringify(name)} is not a command name`, {
        hint: "letters, digits and . _ + - only: it becomes /usr/local/bin/NAME",
      });
    return { name, text };
  },
  makeAutostartItem: ({ name, package: pkg }) => {
    if (!/^[A-Za-z0-9._+-]+$/.test(name))
      throw configError(`lib.makeAutostartItem: ${JSON.stringify(name)} is not a desktop entry's name`, {
        hint: 'the file name without .desktop, as in /usr/share/applications: { name: "firefox-esr", package: "firefox-esr" }',
      });
    return { autostart: name, package: pkg };
  },
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

/** What one pass over a node's modules collects. */
interface Collected {
  defs: Definition[];
  failures: ModuleFailure[];
  /** `specialisation` as each module defines it (merged apart: its configurations are modules) */
  specialisations: Definition[];
}

function flatten(entry: Labelled, args: ModuleArgs, out: Collected, depth = 0): void {
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
      out.failures.push({ source: entry.source, error });
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
  const { imports, specialisation, ...rest } = cfg;
  if (imports !== undefined && !Array.isArray(imports))
    throw configError(`${entry.source}.imports must be a list of modules`);
  (imports ?? []).forEach((m, i) => {
    const name = typeof m === "function" && m.name ? ` (${m.name})` : "";
    flatten({ source: `${entry.source}.imports[${i}]${name}`, module: m }, args, out, depth + 1);
  });
  if (specialisation !== undefined)
    out.specialisations.push({ source: entry.source, value: specialisation, priority: PRIORITY.normal });
  out.defs.push({ source: entry.source, value: rest, priority: PRIORITY.normal });
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

/** A Redis server's unit, account and runtime folder name: redis-NAME, or redis for "". */
export const redisName = (server: string): string => (server === "" ? "redis" : `redis-${server}`);

/** The UDP port OpenArena's server listens on (ioquake3's `net_port`; NixOS opens this one). */
const OPENARENA_PORT = 27960;

/**
 * What vmrig adds to every node, as NixOS's own modules would: the hostname, the
 * vlan addresses, the forwarding NIC, pool sockets, the game servers' and SSH's firewall openings.
 */
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
    const tw = config.services.teeworlds;
    const oa = config.services.openarena;
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
        users: {
          // NixOS's `name` of an account: its attribute's name (scripts read nodes.x.config.users.users.alice.name)
          ...Object.fromEntries(Object.keys(config.users.users).map((u) => [u, { name: lib.mkDefault(u) }])),
          ...Object.fromEntries(
            Object.values(config.services.redis.servers)
              .filter((s) => s.enable && s.user)
              .map((s) => [s.user, { isSystemUser: true, group: s.user, name: lib.mkDefault(s.user) }]),
          ),
        },
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
          allowedUDPPorts: [
            ...(tw.enable && tw.openPorts ? [tw.port] : []),
            ...(oa.enable && oa.openPorts ? [OPENARENA_PORT] : []),
          ],
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
  const labelOf = (n: string) => `${containers.has(n) ? "containers" : "nodes"}.${n}`;
  const modulesOf = (n: string, i: number): Labelled[] => [
    { source: "vmrig's built-in network module", module: builtinModule(n, i + 1) },
    ...(defaults !== undefined ? [{ source: "defaults", module: defaults }] : []),
    { source: labelOf(n), module: nodes[n]! },
  ];
  const settled = fixpoint(names, (current, nodesArg) => {
    const next: Record<string, Round> = {};
    for (const [i, name] of names.entries()) {
      const round = evalModules(
        modulesOf(name, i),
        { config: current[name]!, nodes: nodesArg, lib, name },
        labelOf(name),
      );
      if (containers.has(name)) checkContainerDefinitions(name, round.collected.defs);
      next[name] = round;
    }
    return next;
  });
  const nodesArg = nodesOf(settled);
  for (const [i, n] of names.entries()) {
    checkNode(labelOf(n), settled[n]!.config);
    const specs = evalSpecialisations(n, labelOf(n), modulesOf(n, i), settled[n]!.collected, nodesArg);
    Object.assign(settled[n]!.config, { specialisation: specs, system: withToplevel(settled[n]!.config, TOPLEVEL, n) });
  }
  return Object.fromEntries(names.map((n) => [n, settled[n]!.config]));
}

/** One evaluation of a node's modules: the merged config, and what the modules defined. */
interface Round {
  config: EvaluatedConfig;
  collected: Collected;
}

function evalModules(modules: Labelled[], args: ModuleArgs, label: string): Round {
  const collected: Collected = { defs: [], failures: [], specialisations: [] };
  for (const m of modules) flatten(m, args, collected);
  return { config: mergeOptions(nodeOptions, collected.defs, label, allPaths) as EvaluatedConfig, collected };
}

function nodesOf(rounds: Record<string, Round>): NodesInfo {
  return Object.fromEntries(Object.entries(rounds).map(([n, r]) => [n, nodeInfo(r.config)]));
}

/**
 * Function modules see the final config (theirs and the other nodes'), as in NixOS: here
 * by evaluating again until nothing changes, instead of laziness. A module still failing
 * once settled fails for good.
 */
function fixpoint(
  names: string[],
  evaluate: (current: Record<string, EvaluatedConfig>, nodes: NodesInfo) => Record<string, Round>,
): Record<string, Round> {
  let current: Record<string, EvaluatedConfig> = Object.fromEntries(
    names.map((n) => [n, mergeOptions(nodeOptions, [], `nodes.${n}`, allPaths) as EvaluatedConfig]),
  );
  let nodesArg = nodesOf(Object.fromEntries(names.map((n) => [n, { config: current[n]! } as Round])));
  let previousJson = "";
  for (let round = 0; round < 8; round++) {
    const next = evaluate(current, nodesArg);
    current = Object.fromEntries(names.map((n) => [n, next[n]!.config]));
    nodesArg = nodesOf(next);
    const json = JSON.stringify(current);
    if (json === previousJson) {
      const f = names.flatMap((n) => next[n]!.collected.failures)[0];
      if (f) {
        throw configError(
          `${f.source}: the module threw: ${f.error instanceof Error ? f.error.message : String(f.error)}`,
          {
            hint: "a module may read `config` and `nodes`, but only options that exist (see docs/options.md)",
            cause: f.error,
          },
        );
      }
      return next;
    }
    previousJson = json;
  }
  throw configError("node configurations do not settle: a module's output keeps changing with its input", {
    hint: "a function module should not derive an option from the same option",
  });
}

function withToplevel(c: EvaluatedConfig, toplevel: string, node: string): EvaluatedConfig["system"] {
  return { ...c.system, build: { toplevel, vm: `${VM_PATH}/${node}` } };
}

/** Where `system.build.vm` points: not a path in the guest or on the host, a name `create_machine` reads. */
export const VM_PATH = "/vmrig/vm";

const SPECIALISATION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * A node's specialisations, each its own evaluation: the node's modules (unless
 * `inheritParentConfig` is false) plus the specialisation's configurations, as NixOS
 * does. The other nodes are seen as they are, settled.
 */
function evalSpecialisations(
  name: string,
  label: string,
  parentModules: Labelled[],
  collected: Collected,
  nodesArg: NodesInfo,
): Record<string, EvaluatedSpecialisation> {
  const byName = new Map<string, { configurations: Labelled[]; inherit: Definition[] }>();
  for (const d of collected.specialisations) {
    if (d.value === null || typeof d.value !== "object" || Array.isArray(d.value))
      throw configError(
        `option \`${label}.specialisation\` expects an attribute set of specialisations, in ${d.source}`,
      );
    for (const [spec, entry] of Object.entries(d.value as Record<string, unknown>)) {
      const at = `${label}.specialisation.${spec}`;
      if (!SPECIALISATION_NAME.test(spec))
        throw configError(`\`${at}\`: a specialisation's name becomes a folder name: letters, digits, ., _ and -`);
      if (entry === null || typeof entry !== "object" || Array.isArray(entry))
        throw configError(`option \`${at}\` expects { configuration, inheritParentConfig }, in ${d.source}`);
      const { configuration, inheritParentConfig, ...extra } = entry as Record<string, unknown>;
      const unknown = Object.keys(extra)[0];
      if (unknown !== undefined) throw unknownSpecialisationOption(`${at}.${unknown}`, unknown);
      const slot = byName.get(spec) ?? { configurations: [], inherit: [] };
      byName.set(spec, slot);
      if (configuration !== undefined)
        slot.configurations.push({ source: `${at}.configuration`, module: configuration as NodeModule });
      if (inheritParentConfig !== undefined)
        slot.inherit.push({ source: d.source, value: inheritParentConfig, priority: PRIORITY.normal });
    }
  }
  const out: Record<string, EvaluatedSpecialisation> = {};
  for (const [spec, slot] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
    const at = `${label}.specialisation.${spec}`;
    const { inheritParentConfig } = mergeOptions(
      { inheritParentConfig: specialisationInherit },
      slot.inherit.map((d) => ({ ...d, value: { inheritParentConfig: d.value } })),
      at,
      allPaths,
    ) as { inheritParentConfig: boolean };
    const modules = [...(inheritParentConfig ? parentModules : parentModules.slice(0, -1)), ...slot.configurations];
    const [settled] = Object.values(
      fixpoint([name], (current) => ({
        [name]: evalModules(modules, { config: current[name]!, nodes: nodesArg, lib, name }, `${at}.configuration`),
      })),
    ) as [Round];
    if (settled.collected.specialisations.some((d) => d.source.startsWith(`${at}.configuration`)))
      throw configError(`\`${at}.configuration\` defines specialisations of its own: NixOS does not nest them`);
    checkNode(`${at}.configuration`, settled.config);
    const toplevel = `${TOPLEVEL}/specialisation/${spec}`;
    out[spec] = {
      inheritParentConfig,
      configuration: Object.assign(settled.config, {
        specialisation: {},
        system: withToplevel(settled.config, toplevel, name),
      }),
    };
  }
  return out;
}

const specialisationInherit = option(
  t.bool,
  true,
  "Start from the node's own configuration (NixOS's default) rather than from vmrig's defaults alone.",
);

function unknownSpecialisationOption(fullPath: string, key: string): Error {
  const sib = suggest(key, ["configuration", "inheritParentConfig"]);
  return configError(`unknown option \`${fullPath}\``, {
    hint: sib
      ? `did you mean \`${fullPath.slice(0, -key.length)}${sib}\`?`
      : "a specialisation has `configuration` and `inheritParentConfig`",
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
