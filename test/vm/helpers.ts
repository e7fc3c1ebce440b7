import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { evalNodes, type NodeModule } from "../../src/config/eval.js";
import { buildNodeImage, prepareBases } from "../../src/image/image.js";
import { childPids, isRunning, run } from "../../src/util/proc.js";
import { socketPaths, type VmSpec } from "../../src/vm/qemu-args.js";
import { launchQemu, type QemuVm } from "../../src/vm/qemu.js";
import type { Machine } from "../../src/machine/machine.js";
import { Logger } from "../../src/session/logger.js";
import { createTopology } from "../../src/session/topology.js";

/** Build a one-node image and boot it on the vm layer directly (no driver). */
export async function bootVm(name: string, module: NodeModule = {}): Promise<{ vm: QemuVm; dir: string }> {
  const configs = evalNodes({ [name]: module });
  const bases = await prepareBases(configs, () => undefined);
  const base = [...bases.values()][0]!;
  const img = await buildNodeImage(name, configs[name]!, [], base, {
    progress: () => undefined,
    sourceDir: process.cwd(),
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-test-"));
  const spec: VmSpec = {
    name,
    disk: img.root,
    kernel: img.kernel,
    initrd: img.initrd,
    memoryMiB: 1024,
    cores: Math.min(2, os.cpus().length),
    nics: [],
    accel: "tcg",
    extraArgs: [],
    stateDir: dir,
    consoleLog: path.join(dir, "console.log"),
  };
  const root = path.join(dir, "root.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", img.root, "-F", "raw", root]);
  const vm = await launchQemu(spec, { layout: { sockets: socketPaths(spec), drives: { root } } });
  return { vm, dir };
}

/** PIDs of running processes named `name` (all of them, whoever started them: compare before and after). */
export function pidsOf(name: string): string[] {
  try {
    return execFileSync("pgrep", ["-x", name], { encoding: "utf8" }).split("\n").filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** PIDs of every QEMU on the host, for "nothing left running" checks (compare before and after). */
export const qemuPids = (): string[] => pidsOf("qemu-system-x86");

/** The QEMUs this test process started whose command line has every one of `words` (to kill one of ours, by PID). */
export function ownQemus(...words: string[]): number[] {
  return childPids(process.pid).filter((p) => {
    try {
      const argv = fs.readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
      return argv[0]!.startsWith("qemu-system") && words.every((w) => argv.some((a) => a.includes(w))) && isRunning(p);
    } catch {
      return false;
    }
  });
}

/** Every process below `pid`, children first. */
export function descendants(pid: number): number[] {
  return childPids(pid).flatMap((k) => [k, ...descendants(k)]);
}

/** PIDs of running (not zombie) processes named `name`. */
export const livePids = (name: string): string[] => pidsOf(name).filter((p) => isRunning(Number(p)));

/** One machine of `node`, started through the session layer (a topology named `name`), with its result folder; `close` stops it and removes the folder. */
export async function startOneMachine(
  name: string,
  node: NodeModule,
  opts: { enableOCR: boolean },
): Promise<{ m: Machine; resultDir: string; close: () => Promise<void> }> {
  const resultDir = fs.mkdtempSync(path.join(os.tmpdir(), `vmrig-${name}-`));
  // VMRIG_TEST_LOG=1 prints the machine's log (its calls, their times, its console) as it runs
  const print = process.env.VMRIG_TEST_LOG ? (line: string) => process.stderr.write(`${line}\n`) : () => undefined;
  const logger = new Logger(path.join(resultDir, "log.txt"), print);
  const topo = await createTopology(
    { name, nodes: { machine: node } },
    { logger, resultDir, sourceDir: process.cwd(), accel: "auto", keepVmState: false, enableOCR: opts.enableOCR },
  );
  const close = async () => {
    await topo.close();
    fs.rmSync(resultDir, { recursive: true, force: true });
  };
  const m = topo.machines[0] as Machine;
  try {
    await m.start();
  } catch (e) {
    await close();
    throw e;
  }
  return { m, resultDir, close };
}
