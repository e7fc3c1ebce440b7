import fs from "node:fs";
import path from "node:path";
import type { MachineCore } from "./core.js";
import { adopt } from "./boot.js";
import { launchQemu, resumeRestored, type QemuVm } from "../vm/qemu.js";
import { socketPaths, type Layout } from "../vm/qemu-args.js";
import { VmrigError } from "../util/errors.js";
import { Interrupted, run } from "../util/proc.js";

interface SavedMachine {
  core: MachineCore;
  layout: Layout;
  state: string;
  /** the disks as they were at the checkpoint: read-only from then on */
  frozen: Record<string, string>;
  bootId: string;
  console: string;
}

/** The machines of a test at one instant (SPEC §7 checkpoints). */
export interface Checkpoint {
  name: string;
  machines: SavedMachine[];
  /** machines that were not running: a restore stops them */
  stopped: MachineCore[];
}

let serial = 0;

function runningVm(m: MachineCore, call: string): QemuVm | undefined {
  const g = m.guest;
  if (!g?.running) return undefined;
  if (g.kind !== "qemu") throw m.fail(`${m.name} is not a VM: checkpoints need QEMU`, call);
  if (m.hostNic && !(g as QemuVm).spec.forwardPorts?.length) {
    throw m.fail("a checkpoint cannot hold a machine with a NIC plugged in by forwardPort()", call, {
      hint: "declare the forward in virtualisation.forwardPorts instead: that NIC is part of the machine from the start",
    });
  }
  return g as QemuVm;
}

/**
 * Pause every running machine together, freeze each disk (the machine goes on writing to a
 * new overlay on top of it), save each machine's state, and let them all run again.
 */
export async function takeCheckpoint(machines: MachineCore[], dir: string, name: string): Promise<Checkpoint> {
  const call = `snapshot(${JSON.stringify(name)})`;
  stillOpen(machines, call);
  const vms = machines.map((m) => [m, runningVm(m, call)] as const);
  const up = vms.filter((e): e is readonly [MachineCore, QemuVm] => e[1] !== undefined);
  const cp: Checkpoint = { name, machines: [], stopped: vms.filter(([, vm]) => !vm).map(([m]) => m) };
  await Promise.all(up.map(([, vm]) => vm.pause()));
  try {
    for (const [m, vm] of up) {
      const tag = `${m.name}-cp${++serial}`;
      const next = Object.fromEntries(
        Object.keys(vm.layout.drives).map((id) => [id, path.join(dir, `${tag}-${id}.qcow2`)]),
      );
      const frozen = await vm.freezeDisks(next);
      m.disks = { ...vm.layout.drives };
      const state = path.join(dir, `${tag}.state`);
      await vm.saveState(state);
      cp.machines.push({
        core: m,
        layout: { ...vm.layout, drives: { ...vm.layout.drives } },
        state,
        frozen,
        bootId: vm.backdoor.bootId ?? "",
        console: vm.console.all,
      });
    }
  } finally {
    await Promise.all(up.map(([, vm]) => (vm.running ? vm.resume() : Promise.resolve())));
  }
  return cp;
}

/** Every machine back to the checkpoint's instant: the running ones stopped, the saved ones loaded, then all resumed at once. */
export async function restoreCheckpoint(cp: Checkpoint, dir: string): Promise<void> {
  const call = `restore(${JSON.stringify(cp.name)})`;
  const cores = [...cp.machines.map((s) => s.core), ...cp.stopped];
  stillOpen(cores, call);
  await Promise.all(cores.map((m) => m.guest?.kill() ?? Promise.resolve()));
  const loaded: [SavedMachine, QemuVm][] = [];
  // Until they are adopted, the new QEMUs are this function's alone: power.kill() stops a
  // machine's adopted guest, so a close() while they load or resume must stop them here.
  const stopLoaded = () => void Promise.all(loaded.map(([, vm]) => vm.kill()));
  for (const m of cores) m.closing.signal.addEventListener("abort", stopLoaded, { once: true });
  try {
    for (const s of cp.machines) {
      const m = s.core;
      stillOpen(cores, call);
      const spec = m.vmSpec("restore()");
      const tag = `${m.name}-r${++serial}`;
      const drives: Record<string, string> = {};
      for (const [id, frozen] of Object.entries(s.frozen)) {
        drives[id] = path.join(dir, `${tag}-${id}.qcow2`);
        await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", frozen, "-F", "qcow2", drives[id]]);
      }
      const vm = await launchQemu(spec, {
        call,
        layout: { ...s.layout, sockets: socketPaths(spec), drives, incoming: true },
        restore: {
          state: s.state,
          bootId: s.bootId,
          console: s.console,
          origin: `from checkpoint "${cp.name}"`,
          linksUp: false,
          paused: true,
        },
        onConsoleLine: (line) => m.log.consoleLine(m.name, line),
        signal: m.closing.signal,
      });
      loaded.push([s, vm]);
      stillOpen(cores, call); // (closed while this one launched: the listener ran before it was in `loaded`)
    }
    await Promise.all(loaded.map(([, vm]) => resumeRestored(vm)));
    stillOpen(cores, call);
  } catch (e) {
    await Promise.all(loaded.map(([, vm]) => vm.kill()));
    throw e instanceof VmrigError ? e : new VmrigError(`${call} failed: ${String(e)}`, { call });
  } finally {
    for (const m of cores) m.closing.signal.removeEventListener("abort", stopLoaded);
  }
  for (const [s, vm] of loaded) {
    s.core.disks = { ...vm.layout.drives };
    s.core.hostNic = !!vm.spec.forwardPorts?.length;
    adopt(s.core, vm);
  }
}

/**
 * A run that is closing (Ctrl-C, a timeout) stops its machines while the script may still be
 * inside a restore loop: the loop must end there, not launch QEMU again into a state directory
 * that close() is removing.
 */
function stillOpen(cores: MachineCore[], call: string): void {
  const closed = cores.find((m) => m.closing.signal.aborted);
  if (closed) {
    throw new Interrupted(`${call} stopped: the run is ending and ${closed.name} was stopped`, { call });
  }
}

/**
 * Checkpoint files live in the run's state directory, removed with it. Never recursive: once
 * close() has removed the state directory a late snapshot() or restore() fails here instead of
 * making it again (and leaving it behind).
 */
export function checkpointDir(stateDir: string): string {
  const dir = path.join(stateDir, "checkpoints");
  if (!fs.existsSync(dir)) fs.mkdirSync(dir);
  return dir;
}
