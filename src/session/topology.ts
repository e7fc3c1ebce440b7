import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { evalNodes, vlanAddresses, type EvaluatedConfig, type NodeModule } from "../config/eval.js";
import { buildNodeImage, prepareBases, type NodeImage } from "../image/image.js";
import type { HostEntry } from "../image/render.js";
import { cacheRoot } from "../image/store.js";
import { Machine, ScreenRecorder, type Terminal, type Video } from "../machine/machine.js";
import { resolveAccel, type AccelMemo } from "../vm/accel.js";
import type { Accel } from "../vm/guest.js";
import type { SnapshotStore } from "../vm/snapshot.js";

export type { Accel };
import { VlanSwitch } from "../vm/vlan.js";
import { holdEntries } from "../image/in-use.js";
import { addToRoot, recordRoot } from "../image/roots.js";
import { storeSnapshots } from "./snapshots.js";
import { claim } from "../util/owned-dir.js";
import { HostSlots } from "../util/host-lock.js";
import { configError, errorMessage } from "../util/errors.js";
import { commandExists } from "../util/proc.js";
import type { Logger } from "./logger.js";

export interface TopologyDefinition {
  name: string;
  nodes?: Record<string, NodeModule> | undefined;
  /** machines that run as systemd-nspawn containers (SPEC §9): one name space with `nodes` */
  containers?: Record<string, NodeModule> | undefined;
  defaults?: NodeModule | undefined;
}

/** Every machine's evaluated config, nodes and containers together (one name space). */
export function evaluateMachines(def: TopologyDefinition): Record<string, EvaluatedConfig> {
  return evalNodes(
    { ...(def.nodes ?? {}), ...(def.containers ?? {}) },
    def.defaults,
    new Set(Object.keys(def.containers ?? {})),
  );
}

/** Containers need systemd-nspawn and root: said before anything is built. */
function checkContainerHost(names: string[]): void {
  const which = `containers ${names.join(", ")}`;
  if (process.getuid?.() !== 0)
    throw configError(`${which} need root: systemd-nspawn, mount and network namespaces`, {
      hint: "run vmrig as root, or declare the machines under `nodes` (VMs need no root)",
    });
  if (!commandExists("systemd-nspawn"))
    throw configError(`${which} need systemd-nspawn, which is not installed`, {
      hint: "apt install systemd-container (or run scripts/setup.sh); `vmrig doctor` checks",
    });
}

/** Evaluate the nodes and build their images: config errors surface here, before any VM. */
export async function buildImages(
  def: TopologyDefinition,
  sourceDir: string,
  progress: (m: string) => void,
  /** the test file: its images become a GC root (kept by `vmrig gc`) */
  testFile?: string,
): Promise<{ configs: Record<string, EvaluatedConfig>; images: Record<string, NodeImage> }> {
  const containers = new Set(Object.keys(def.containers ?? {}));
  const configs = evaluateMachines(def);
  if (containers.size) checkContainerHost([...containers].sort());
  const bases = await prepareBases(configs, progress);
  const names = Object.keys(configs).sort();
  const hosts: HostEntry[] = names.map((n, i) => {
    const vlan = configs[n]!.virtualisation.vlans[0];
    if (vlan === undefined) return { name: configs[n]!.networking.hostName };
    const a = vlanAddresses(vlan, i + 1);
    return { name: configs[n]!.networking.hostName, ipv4: a.ipv4, ipv6: a.ipv6 };
  });
  const images: Record<string, NodeImage> = {};
  for (const n of names) {
    const c = configs[n]!;
    images[n] = await buildNodeImage(n, c, hosts, bases.get(`${c.debian.suite} ${c.debian.mirror}`)!, {
      progress,
      sourceDir,
      format: containers.has(n) ? "tree" : "disk",
    });
  }
  if (testFile) recordRoot(testFile, def.name, images);
  return { configs, images };
}

export interface TopologyOptions {
  logger: Logger;
  resultDir: string;
  sourceDir: string;
  accel: "auto" | Accel;
  keepVmState: boolean;
  /** restore boot snapshots (default true; --no-snapshots turns it off) */
  snapshots?: boolean;
  /** run before every machine command (the script's polling conditions) */
  beforeCommand?: () => Promise<void>;
  /** the terminal Machine.shell() uses (the REPL lends its own) */
  terminal?: () => Terminal;
  /** the test file, recorded as the GC root of its images */
  testFile?: string;
  /** interactive mode: machines with virtualisation.graphics serve their display (VNC) */
  interactive?: boolean;
  /** the test's enableOCR */
  enableOCR?: boolean;
  /** `--video`: record every VM's screen (virtualisation.graphics) into the result folder */
  video?: boolean;
}

/** The accelerator probe's verdicts, in the cache: `<cache>/accel.json` (one key per host boot, kernel and QEMU). */
function accelMemo(): AccelMemo {
  const file = path.join(cacheRoot(), "accel.json");
  const load = (): Record<string, Accel> => {
    try {
      return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, Accel>;
    } catch {
      return {};
    }
  };
  return {
    read: (key) => load()[key],
    write: (key, accel) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      // only the newest verdicts: the keys of earlier host boots are never read again
      const entries = Object.entries({ ...load(), [key]: accel }).slice(-8);
      fs.writeFileSync(`${file}.${process.pid}`, JSON.stringify(Object.fromEntries(entries)));
      fs.renameSync(`${file}.${process.pid}`, file);
    },
  };
}

/** Everything a test's machines need, running: switches up, machines ready to boot on first use. */
export interface Topology {
  machines: Machine[];
  configs: Record<string, EvaluatedConfig>;
  vlans: { vlan: number; members: string[] }[];
  accel: Accel;
  /** the run's sockets, overlays and checkpoints (removed by close() unless disks are kept) */
  stateDir: string;
  /** kill every VM and switch, encode the videos, and remove the run's temporary files */
  close(): Promise<void>;
  /** `--video`: the encoded videos, once close() has resolved */
  videos: Video[];
  /**
   * Another machine of VM node `node`, named `name` (NixOS's `create_machine`): its own disk
   * from the node's image, the node's config and addresses, on the node's vlans, QEMU given
   * `qemuOptions` too; it boots on first use and is stopped with the others.
   */
  addMachine(node: string, name: string, qemuOptions: string[]): Machine;
  /** the nodes that are VMs (addMachine's nodes), not containers */
  vmNodes: string[];
}

/**
 * Cold boots at once, for every process on this host sharing the cache (Vitest and
 * Playwright workers, parallel CI jobs): under TCG ten vCPUs on two cores make every boot
 * crawl, while a restored machine costs almost nothing. One at a time was too few (five
 * machines: 220 s, against 91 s all at once: each boot's services then start while the
 * next boot waits); two per two host cores.
 */
let coldBootSlots: HostSlots | undefined;
const coldBoots = (): HostSlots =>
  (coldBootSlots ??= new HostSlots(
    path.join(cacheRoot(), "locks", "cold-boot"),
    Math.max(2, os.cpus().length),
    "cold-boot",
  ));

/** What every machine of one topology shares, for newMachine(). */
interface Shared {
  opts: TopologyOptions;
  stateDir: string;
  accel: Accel;
  switches: VlanSwitch[];
  snapshots: SnapshotStore | undefined;
}

/** One machine, ready to start: a container on its tree, or a VM on its disk image. */
function newMachine(
  name: string,
  index: number,
  c: EvaluatedConfig,
  img: NodeImage,
  sh: Shared,
  qemuOptions: string[] = [],
): Machine {
  const { opts, stateDir } = sh;
  const nics = () =>
    c.virtualisation.vlans.map((vlan, slot) => ({
      slot: slot + 1,
      vlan,
      nodeIndex: index + 1,
      switchPath: sh.switches.find((s) => s.vlan === vlan)!.path,
    }));
  const consoleLog = path.join(opts.resultDir, `${name}-console.log`);
  const common = {
    logger: opts.logger,
    resultDir: opts.resultDir,
    specialisations: Object.keys(c.specialisation),
    ...(opts.beforeCommand ? { beforeCommand: opts.beforeCommand } : {}),
    ...(opts.terminal ? { terminal: opts.terminal } : {}),
  };
  if (img.format === "tree")
    return new Machine(name, {
      ...common,
      ocr: false,
      spec: () => ({ kind: "nspawn", name, tree: img.root, nics: nics(), stateDir, consoleLog }),
    });
  return new Machine(name, {
    ...common,
    ocr: opts.enableOCR ?? false,
    coldBoots: coldBoots(),
    ...(sh.snapshots && c.virtualisation.bootSnapshot ? { snapshots: sh.snapshots } : {}),
    ...(opts.video && c.virtualisation.graphics
      ? {
          recorder: new ScreenRecorder(name, path.join(stateDir, "video"), opts.logger.startedAt, {
            width: c.virtualisation.resolution.x,
            height: c.virtualisation.resolution.y,
          }),
        }
      : {}),
    spec: () => ({
      name,
      disk: img.root,
      kernel: img.kernel,
      initrd: img.initrd,
      memoryMiB: c.virtualisation.memorySize,
      cores: Math.max(1, Math.min(c.virtualisation.cores, os.cpus().length)),
      nics: nics(),
      accel: sh.accel,
      extraArgs: [...c.virtualisation.qemu.options, ...qemuOptions],
      stateDir,
      consoleLog,
      keepState: opts.keepVmState,
      forwardPorts: c.virtualisation.forwardPorts,
      emptyDisks: c.virtualisation.emptyDiskImages,
      resolution: c.virtualisation.resolution,
      desktopInput: c.services.xserver.enable,
      kernelParams: c.boot.kernelParams,
      ...(opts.interactive && c.virtualisation.graphics
        ? { vncSocket: path.join(stateDir, `${name.slice(0, 20)}.vnc`) }
        : {}),
    }),
  });
}

/** The run's own folder for sockets, overlays and checkpoints (the cache's, with disks kept). */
function newStateDir(def: TopologyDefinition, keepVmState: boolean): string {
  const stateDir = keepVmState
    ? path.join(cacheRoot(), "vm-state", def.name)
    : fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-"));
  fs.mkdirSync(stateDir, { recursive: true });
  claim(stateDir);
  return stateDir;
}

export async function createTopology(def: TopologyDefinition, opts: TopologyOptions): Promise<Topology> {
  const { logger } = opts;
  const { configs, images } = await logger.nested(`building images for ${def.name}`, () =>
    buildImages(def, opts.sourceDir, (m) => logger.log(m), opts.testFile),
  );
  // Containers need no accelerator: a test with no VM does not probe for one.
  const vmImage = Object.values(images).find((img) => img.format === "disk");
  const accel = vmImage ? await resolveAccel(opts.accel, vmImage.kernel, accelMemo()) : "tcg";
  if (vmImage) logger.log(`accelerator: ${accel}${accel === "tcg" ? " (software emulation: no usable KVM)" : ""}`);

  // While they run, the machines' store entries are never removed (by `vmrig gc` or the store's budget).
  const hold = await holdEntries(Object.values(images).flatMap((i) => i.entries));
  const stateDir = newStateDir(def, opts.keepVmState);
  const switches: VlanSwitch[] = [];
  const machines: Machine[] = [];
  const videos: Video[] = [];
  const close = async () => {
    await Promise.all(machines.map((m) => m.kill().catch(() => undefined)));
    await Promise.all(switches.map((s) => s.stop().catch(() => undefined)));
    if (opts.video) videos.push(...(await encodeVideos(machines, opts.resultDir, logger)));
    if (!opts.keepVmState) fs.rmSync(stateDir, { recursive: true, force: true });
    hold.release();
  };
  try {
    const names = Object.keys(configs).sort();
    const vlanIds = [...new Set(names.flatMap((n) => configs[n]!.virtualisation.vlans))].sort((a, b) => a - b);
    for (const v of vlanIds) {
      const sw = new VlanSwitch(v, stateDir);
      switches.push(sw);
      await sw.start();
    }
    // Boot snapshots restore a pristine disk: with disks kept between runs they would not be.
    const snapshots =
      (opts.snapshots ?? true) && !opts.keepVmState
        ? storeSnapshots((entry) => {
            hold.add([entry]);
            if (opts.testFile) addToRoot(opts.testFile, [entry]);
          })
        : undefined;
    const shared: Shared = { opts, stateDir, accel, switches, snapshots };
    for (const [i, name] of names.entries()) machines.push(newMachine(name, i, configs[name]!, images[name]!, shared));
    // Restores load in the background, paused, while the script gets going.
    for (const m of machines) m.prepare();
    const vlans = vlanIds.map((v) => ({
      vlan: v,
      members: names.filter((n) => configs[n]!.virtualisation.vlans.includes(v)),
    }));
    const addMachine = (node: string, name: string, qemuOptions: string[]): Machine => {
      const m = newMachine(name, names.indexOf(node), configs[node]!, images[node]!, shared, qemuOptions);
      configs[name] = configs[node]!; // (partition() reads a machine's addresses by its name)
      machines.push(m);
      return m;
    };
    const vmNodes = names.filter((n) => images[n]!.format === "disk");
    return { machines, configs, vlans, accel, stateDir, close, videos, addMachine, vmNodes };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Each recorded machine's video, encoded (all at once) once they have stopped; a failed encode is logged, never fatal. */
async function encodeVideos(machines: Machine[], resultDir: string, logger: Logger): Promise<Video[]> {
  const videos = await Promise.all(
    machines.map(async (m) => {
      try {
        const v = await m.finishVideo(resultDir);
        if (v)
          logger.log(
            `video: ${path.relative(process.cwd(), v.file)} (${v.frames} screens, ${(v.durationMs / 1000).toFixed(1)} s)`,
            m.name,
          );
        return v;
      } catch (e) {
        logger.log(`could not encode the video: ${errorMessage(e)}`, m.name);
        return undefined;
      }
    }),
  );
  return videos.filter((v): v is Video => v !== undefined);
}
