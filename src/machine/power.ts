import path from "node:path";
import { adopt, coldBoot, createDisks, KernelCrash, secs, serveDisplay } from "./boot.js";
import { startFromSnapshot } from "./boot-snapshot.js";
import { startContainer } from "./container.js";
import { DEFAULT_TIMEOUT, type MachineCore } from "./core.js";
import { driveIds, socketPaths } from "../vm/qemu-args.js";
import { tail } from "../util/errors.js";
import { within } from "../util/proc.js";

/** Boot (or restore) the machine; concurrent callers share one start. */
export function start(m: MachineCore, location: string | undefined): Promise<void> {
  if (m.guest?.running) return Promise.resolve();
  // A wait still polling after its run was interrupted must end, not boot the machine again.
  if (m.closed)
    return Promise.reject(
      m.fail("the run is over: its machines are stopped for good", "start()", {
        location,
        hint: "the run was interrupted, timed out or finished while this call still ran",
      }),
    );
  m.starting ??= m
    .nested(m.ctx.spec().kind === "nspawn" ? "starting container" : "starting vm", async () => {
      try {
        await startOnce(m, location);
      } catch (e) {
        if (!(e instanceof KernelCrash)) throw e;
        const crashError = (c: KernelCrash, hint: string) =>
          m.fail(`the guest kernel crashed while booting: ${c.line.trim()}`, "start()", {
            location,
            output: c.console,
            hint,
          });
        if (m.vmSpec("start()").accel !== "tcg")
          throw crashError(e, "the console log in the result folder has the whole trace");
        // Under TCG a kernel that crashes while booting is most often QEMU's fault, not the
        // test's (its multi-threaded CPU emulation races the kernel's live code patching,
        // rarely): boot once more, and say so in the log.
        m.log.log(`the guest kernel crashed while booting (${e.line.trim()}); booting again`, m.name);
        try {
          await startOnce(m, location);
        } catch (again) {
          if (!(again instanceof KernelCrash)) throw again;
          throw crashError(
            again,
            "it crashed on both boots, so it is not one of TCG's rare races: read the trace (the console log in the result folder) and check boot.kernelParams",
          );
        }
      }
    })
    .finally(() => (m.starting = undefined));
  return m.starting;
}

async function startOnce(m: MachineCore, location: string | undefined): Promise<void> {
  const spec = m.ctx.spec();
  if (spec.kind === "nspawn") return startContainer(m, spec, location);
  const t0 = Date.now();
  m.hostNic = false;
  // A machine's first start in a run may restore its boot snapshot: its disk is still the
  // image. Later starts (after shutdown or crash) boot from the disk it has now.
  if ((m.disks === undefined || m.prepared) && m.ctx.snapshots) {
    const vm = await startFromSnapshot(m, spec, location);
    if (vm) {
      adopt(m, vm);
      m.systemdReadyMs = Date.now() - t0;
      m.log.log(`restored ${vm.origin} in ${secs(m.systemdReadyMs)}`, m.name);
      m.log.mark("power", `restored (${secs(m.systemdReadyMs)})`, m.name);
      serveDisplay(m, vm);
      return;
    }
  }
  m.disks ??= await createDisks(spec, {
    drives: Object.fromEntries(
      driveIds(spec).map((id) => [
        id,
        path.join(spec.stateDir, id === "root" ? `${spec.name}.qcow2` : `${spec.name}-${id}.qcow2`),
      ]),
    ),
    keep: spec.keepState ?? false,
  });
  const vm = await coldBoot(m, spec, { sockets: socketPaths(spec), drives: m.disks }, location, false);
  m.systemdReadyMs = Date.now() - t0;
  m.log.log(`booted in ${secs(m.systemdReadyMs)} (shell after ${secs(vm.bootMs)})`, m.name);
  m.log.mark("power", `booted (${secs(m.systemdReadyMs)})`, m.name);
  serveDisplay(m, vm);
}

/** Stop the machine's QEMU, and a prepared restore nobody used. */
export async function kill(m: MachineCore): Promise<void> {
  m.closed = true;
  m.closing.abort(m.fail("stopped while it was starting: the run is ending", "start()"));
  const prepared = m.prepared;
  m.prepared = undefined;
  await (await prepared)?.kill();
  await m.guest?.kill();
}

export async function isUp(m: MachineCore): Promise<boolean> {
  if (!m.guest?.running) return false;
  try {
    await m.guest.backdoor.ping(2000);
    return true;
  } catch {
    return false;
  }
}

export async function shutdown(m: MachineCore): Promise<void> {
  const g = m.guest;
  if (!g?.running) return;
  m.log.mark("power", "shut down", m.name);
  await m.nested("shutting down", async () => {
    g.backdoor.run("systemctl poweroff --no-block").catch(() => undefined);
    await within(g.waitForExit(), 120_000);
    if (g.running) await g.kill();
  });
}

export async function crash(m: MachineCore): Promise<void> {
  if (!m.guest?.running) return;
  m.log.log(m.guest.kind === "qemu" ? "crashing (QEMU killed)" : "crashing (container killed)", m.name);
  m.log.mark("power", "crashed", m.name);
  await m.guest.kill();
}

export async function waitForShutdown(
  m: MachineCore,
  location: string | undefined,
  timeout = DEFAULT_TIMEOUT,
): Promise<void> {
  const g = m.guest;
  if (!g?.running) return;
  const done = await within(
    g.waitForExit().then(() => true),
    timeout * 1000,
  );
  if (!done) throw m.fail(`still running after ${timeout} s`, "waitForShutdown()", { location });
}

/** Reboot in the same process (always allowed) and resolve when the shell answers with a new boot id. */
export async function reboot(m: MachineCore, location: string | undefined, timeout = DEFAULT_TIMEOUT): Promise<void> {
  const g = await m.up();
  await m.nested("rebooting", async () => {
    const before = g.backdoor.bootId;
    // bounded: `within(…, timeout)` below
    const rebooted = new Promise<void>((resolve) => {
      const onReady = (id: string) => {
        if (id === before) return;
        g.backdoor.off("ready", onReady);
        resolve();
      };
      g.backdoor.on("ready", onReady);
    });
    g.backdoor.run("systemctl reboot --no-block").catch(() => undefined);
    const ok = await within(
      rebooted.then(() => true),
      timeout * 1000,
    );
    if (!ok)
      throw m.fail(`did not come back within ${timeout} s of rebooting`, "reboot()", {
        location,
        output: tail(g.console.all),
      });
  });
}
