import fs from "node:fs";
import path from "node:path";
import { DEFAULT_TIMEOUT, type MachineCore } from "./core.js";
import { launchQemu, resumeRestored, type QemuVm } from "../vm/qemu.js";
import { driveIds, socketPaths, type Layout, type VmSpec } from "../vm/qemu-args.js";
import { qemuInfo } from "../vm/qemu-info.js";
import { snapshotKey, type SavedBoot, type SnapshotMeta } from "../vm/snapshot.js";
import { VmrigError, errorMessage, tail } from "../util/errors.js";
import { ownedTempDir } from "../util/owned-dir.js";
import { run, within } from "../util/proc.js";

/** What a kernel prints when it crashes (an Oops may leave the boot hanging rather than stopped). */
const KERNEL_CRASH =
  /\b(Oops: |Kernel panic - not syncing|BUG: unable to handle|general protection fault|double fault: |invalid opcode: )/;

/** A boot that ended in a kernel crash: start() may try once more. */
class KernelCrash extends Error {
  constructor(
    readonly line: string,
    /** the console's last lines */
    readonly console: string,
  ) {
    super(`the guest kernel crashed: ${line}`);
  }
}

/**
 * Loops in the guest (no host round trips) until systemd answers and has queued
 * its boot transaction (or finished booting): systemd opens its socket before it
 * queues the default target, and in that window every unit looks idle.
 */
const SYSTEMD_READY =
  "until s=$(systemctl show -p NJobs -p SystemState 2>/dev/null) && " +
  "! { printf '%s\\n' \"$s\" | grep -qx SystemState=initializing && printf '%s\\n' \"$s\" | grep -qx NJobs=0; }; do sleep 0.05; done";

/** How long an isolated first boot may take to finish before it counts as waiting for its peers. */
const ISOLATED_BOOT_S = 90;

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Boot (or restore) the machine; concurrent callers share one start. */
export function start(m: MachineCore, location: string | undefined): Promise<void> {
  if (m.guest?.running) return Promise.resolve();
  m.starting ??= m
    .nested("starting vm", async () => {
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
        if (m.ctx.spec().accel !== "tcg")
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
      logDisplay(m, spec);
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
  logDisplay(m, spec);
}

function logDisplay(m: MachineCore, spec: VmSpec): void {
  if (spec.vncSocket) m.log.log(`display: VNC on unix socket ${spec.vncSocket}`, m.name);
}

export function adopt(m: MachineCore, vm: QemuVm): void {
  m.guest = vm;
  vm.on("exit", () => m.log.detail("QEMU exited", m.name));
}

/** qcow2 overlays: drive `root` on the image (or on `backing`'s file of the same id), the others blank unless backed. */
async function createDisks(
  spec: VmSpec,
  o: { drives: Record<string, string>; keep: boolean; backing?: Record<string, string> },
): Promise<Record<string, string>> {
  for (const [id, file] of Object.entries(o.drives)) {
    if (o.keep && fs.existsSync(file)) continue;
    const backing = o.backing?.[id];
    if (backing) await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", file]);
    else if (id === "root") await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", spec.disk, "-F", "raw", file]);
    else await run("qemu-img", ["create", "-q", "-f", "qcow2", file, `${spec.emptyDisks![Number(id.slice(5))]}M`]);
  }
  return o.drives;
}

/**
 * One cold boot: QEMU up, backdoor answering, systemd taking requests; a kernel crash on
 * the console ends it at once. Waits for a cold-boot slot: boots at once on few cores
 * crawl, restores cost almost nothing.
 */
async function coldBoot(
  m: MachineCore,
  spec: VmSpec,
  layout: Layout,
  location: string | undefined,
  isolated: boolean,
): Promise<QemuVm> {
  const release = (await m.ctx.coldBoots?.take()) ?? (() => undefined);
  let vm: QemuVm | undefined;
  let watching = true;
  let crashSeen = false;
  const ac = new AbortController();
  const crashed = new Promise<never>((_, reject) =>
    ac.signal.addEventListener("abort", () => reject(ac.signal.reason as Error)),
  );
  crashed.catch(() => undefined);
  let consoleText = "";
  const onLine = (line: string) => {
    m.log.consoleLine(m.name, line);
    if (!watching) return;
    consoleText = (consoleText + line + "\n").slice(-20_000);
    if (crashSeen || !KERNEL_CRASH.test(line)) return;
    crashSeen = true;
    // a moment more, so that the report and the console log hold the trace that follows
    setTimeout(() => ac.abort(new KernelCrash(line, tail(consoleText, 40))), 1500);
  };
  try {
    try {
      vm = await launchQemu(spec, { layout, linksDown: isolated, onConsoleLine: onLine, signal: ac.signal });
    } catch (e) {
      throw e instanceof VmrigError || e instanceof KernelCrash
        ? e
        : m.fail(`could not boot: ${errorMessage(e)}`, "start()", { location, cause: e });
    }
    if (!isolated) adopt(m, vm);
    vm.backdoor.on("stray", (b: Buffer) => m.log.detail(`(output outside any command) ${b.toString()}`, m.name));
    // The backdoor starts before systemd (guest/init); as in NixOS, where it is a
    // unit, a started machine must also take `systemctl` requests.
    const ready = await Promise.race([
      vm.backdoor.run(SYSTEMD_READY, 300).catch((e: unknown) => ({ status: -1, stdout: Buffer.from(errorMessage(e)) })),
      crashed,
    ]);
    if (ready.status !== 0)
      throw m.fail("systemd did not start taking requests within 300 s", "start()", {
        location,
        output: tail(vm.console.all, 30),
      });
    if (crashSeen) await crashed; // an Oops that did not stop the boot still leaves a kernel not to trust
    return vm;
  } catch (e) {
    await vm?.kill();
    throw e;
  } finally {
    watching = false;
    release();
  }
}

async function startFromSnapshot(
  m: MachineCore,
  spec: VmSpec,
  location: string | undefined,
): Promise<QemuVm | undefined> {
  const prepared = m.prepared;
  m.prepared = undefined;
  const early = await prepared;
  if (early) {
    try {
      return await resumed(early);
    } catch (e) {
      m.log.log(`could not resume the prepared restore (${errorMessage(e).split("\n")[0]}); booting instead`, m.name);
      await early.kill();
      m.disks = undefined;
      return undefined;
    }
  }
  const store = m.ctx.snapshots!;
  const key = snapshotKey(spec, await qemuInfo());
  let saved = store.find(key, m.name);
  if (!saved) {
    saved = await store.create(key, m.name, (dir) => saveBoot(m, spec, dir, location));
    if (!saved) {
      m.log.log("booting: another run is saving this machine's boot snapshot right now", m.name);
      return undefined;
    }
  }
  if (!saved.meta.ok) {
    m.log.log(`booting, not restoring: ${saved.meta.reason ?? "no boot snapshot"}`, m.name);
    return undefined;
  }
  try {
    return await resumed(await restoreBoot(m, spec, saved));
  } catch (e) {
    m.log.log(`could not restore the boot snapshot (${errorMessage(e).split("\n")[0]}); booting instead`, m.name);
    m.disks = undefined;
    return undefined;
  }
}

/**
 * The first boot of a configuration, saved. It runs with the vlan links down until
 * systemd has finished booting: a boot that ends clean without any peer is what a boot
 * before any peer answered looks like, so restoring it is faithful. One that does not
 * (a failed unit, jobs still waiting) is recorded as such and booted normally, every time.
 */
async function saveBoot(
  m: MachineCore,
  spec: VmSpec,
  dir: string,
  location: string | undefined,
): Promise<SnapshotMeta> {
  const meta = { machine: m.name, qemu: (await qemuInfo()).version, createdAt: new Date().toISOString() };
  // The template's RAM is a shared file on tmpfs while it boots (fast), copied into the
  // store once saved; it never outlives this function.
  const shm = ownedTempDir("/dev/shm");
  const t0 = Date.now();
  let vm: QemuVm | undefined;
  try {
    const drives = await createDisks(spec, {
      drives: Object.fromEntries(driveIds(spec).map((id) => [id, path.join(dir, `${id}.qcow2`)])),
      keep: false,
    });
    vm = await coldBoot(
      m,
      spec,
      { sockets: socketPaths(spec, ".s"), drives, ram: { path: path.join(shm, "ram"), share: true } },
      location,
      true,
    );
    const r = await vm.backdoor.run(
      `timeout ${ISOLATED_BOOT_S} systemctl is-system-running --wait 2>&1; echo "jobs: $(systemctl list-jobs --no-legend 2>/dev/null | awk '{print $2}' | head -5 | xargs)"; ` +
        `echo "failed: $(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | head -5 | xargs)"`,
      ISOLATED_BOOT_S + 30,
    );
    const out = r.stdout.toString().trim().split("\n");
    const state = out[0]?.trim() ?? "";
    if (state !== "running") {
      const why = `its first boot did not finish clean without its peers (systemd ${state || "did not answer"}; ${out.slice(1).join("; ")}), so it boots every time`;
      m.log.log(`no boot snapshot: ${why}`, m.name);
      return { ...meta, ok: false, reason: why };
    }
    const bootMs = Date.now() - t0;
    await vm.pause();
    await vm.saveState(path.join(dir, "state"));
    const bootId = vm.backdoor.bootId;
    fs.writeFileSync(path.join(dir, "console.log"), vm.console.all);
    await vm.kill(); // the template's RAM must not change after the save
    vm = undefined;
    await run("cp", ["--sparse=always", path.join(shm, "ram"), path.join(dir, "ram")]);
    m.log.log(`saved a boot snapshot (isolated boot finished in ${secs(bootMs)})`, m.name);
    return { ...meta, ok: true, ...(bootId ? { bootId } : {}), bootMs };
  } finally {
    await vm?.kill();
    fs.rmSync(shm, { recursive: true, force: true });
  }
}

async function restoreBoot(m: MachineCore, spec: VmSpec, saved: SavedBoot): Promise<QemuVm> {
  const ids = driveIds(spec);
  m.disks = await createDisks(spec, {
    drives: Object.fromEntries(ids.map((id) => [id, path.join(spec.stateDir, `${spec.name}-${id}.qcow2`)])),
    keep: false,
    backing: Object.fromEntries(ids.map((id) => [id, path.join(saved.dir, `${id}.qcow2`)])),
  });
  const layout: Layout = {
    sockets: socketPaths(spec),
    drives: m.disks,
    ram: { path: path.join(saved.dir, "ram"), share: false },
    incoming: true,
  };
  const vm = await launchQemu(spec, {
    layout,
    restore: {
      state: path.join(saved.dir, "state"),
      bootId: saved.meta.bootId ?? "",
      console: fs.readFileSync(path.join(saved.dir, "console.log"), "utf8"),
      origin: `from boot snapshot ${path.basename(saved.dir).slice(0, 12)}`,
      linksUp: true,
      paused: true,
    },
    onConsoleLine: (line) => m.log.consoleLine(m.name, line),
  });
  return vm;
}

/** A loaded restore, let run: resumed, its shell resynchronised, its clock set. */
async function resumed(vm: QemuVm): Promise<QemuVm> {
  await resumeRestored(vm);
  await afterRestore(vm);
  return vm;
}

/**
 * Load a machine's boot snapshot in the background, paused, before anything uses it: its
 * first start then only resumes it. A paused VM uses no CPU; until `start()` the machine is
 * not up for the script (`isUp()` is false), as if it had not been started.
 */
export function prepare(m: MachineCore): void {
  if (m.prepared || m.disks !== undefined || !m.ctx.snapshots || m.guest?.running) return;
  const store = m.ctx.snapshots;
  m.prepared = (async () => {
    const spec = m.ctx.spec();
    const saved = store.find(snapshotKey(spec, await qemuInfo()), m.name);
    return saved?.meta.ok ? await restoreBoot(m, spec, saved) : undefined;
  })().catch((e: unknown) => {
    m.log.detail(`could not load the boot snapshot ahead of time: ${errorMessage(e)}`, m.name);
    m.disks = undefined;
    return undefined;
  });
}

/** Stop the machine's QEMU, and a prepared restore nobody used. */
export async function kill(m: MachineCore): Promise<void> {
  const prepared = m.prepared;
  m.prepared = undefined;
  await (await prepared)?.kill();
  await m.guest?.kill();
}

/** A restored guest's clock is behind by the time since the save: set it to the host's. */
export async function afterRestore(vm: QemuVm): Promise<void> {
  await vm.backdoor.run(`date -s @${(Date.now() / 1000).toFixed(3)} >/dev/null`, 30);
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
  await m.nested("shutting down", async () => {
    g.backdoor.run("systemctl poweroff --no-block").catch(() => undefined);
    await within(g.waitForExit(), 120_000);
    if (g.running) await g.kill();
  });
}

export async function crash(m: MachineCore): Promise<void> {
  if (!m.guest?.running) return;
  m.log.log("crashing (QEMU killed)", m.name);
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
